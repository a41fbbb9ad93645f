#!/bin/bash
# keel-decap's command line (CLI11): every bad argument exits 2 naming the
# option and the value, before anything is touched; --help works. The bad
# cases name an interface that does not exist (nosuchif0), so even a parser
# that let one through could attach nothing; status and detach only read pins
# under a fresh temporary --pin-root. No root needed. With a second argument
# (keel-decap.8), also checks the man page documents every option --help shows.
set -u
DECAP=$1
MAN=${2:-}
pins=$(mktemp -d)
trap 'rm -rf "$pins"' EXIT
CLI=$DECAP
# shellcheck source=cli_check.sh
source "$(dirname "$0")/cli_check.sh"

IF=nosuchif0
prefixes=()
for i in $(seq 1 16); do prefixes+=(--allow-source "10.0.$i.0/24"); done
vips=()
for i in $(seq 1 64); do vips+=(--vip "192.0.2.$i"); done

check "help" 0 "attach" --help
check "help gives the synopsis" 0 "keel-decap attach IFACE [--mode native|generic] [--allow-source PREFIX]..." --help
check "attach help lists --allow-source" 0 "--allow-source PREFIX" attach --help
check "status help lists -o" 0 "-o,--output FORMAT" status -h
check "detach help lists -o" 0 "-o,--output FORMAT" detach -h
check "no arguments: the usage, exit 2" 2 "Usage: keel-decap" 
check "unknown command" 2 "unknown command 'frob' (attach, detach or status)" frob $IF
check "unknown option" 2 "not expected: --bogus" attach $IF --bogus
check "missing interface" 2 "IFACE is required" attach
check "missing interface after options" 2 "IFACE is required" attach --mode generic
check "two interfaces" 2 "not expected: eth9" attach $IF eth9
check "interface name with /" 2 "IFACE: bad interface name 'a/b'" attach a/b
check "interface name too long" 2 "IFACE: bad interface name 'abcdefghijklmnop'" status abcdefghijklmnop
check "prefix length beyond 32" 2 "--allow-source: 10.0.0.1/33: the prefix length must be 0..32" \
  attach $IF --allow-source 10.0.0.1/33
check "prefix length with a leading zero" 2 \
  "--allow-source: 10.0.0.0/08: the prefix length must be 0..32, without leading zeros" \
  attach $IF --allow-source 10.0.0.0/08
check "prefix length beyond 128" 2 "--allow-source: 2001:db8::/129: the prefix length must be 0..128" \
  attach $IF --allow-source 2001:db8::/129
check "not an address" 2 "--allow-source: 10.0.0.300: not an IPv4 or IPv6 address" \
  attach $IF --allow-source 10.0.0.1 --allow-source 10.0.0.300
check "--allow-source without a value" 2 "--allow-source: 1 required" attach $IF --allow-source
check "17 prefixes" 2 "--allow-source: at most 16 prefixes, got 17" \
  attach $IF "${prefixes[@]}" --allow-source 10.0.17.0/24
check "attach help lists --vip" 0 "--vip PREFIX" attach --help
check "--vip prefix length beyond 32" 2 "--vip: 192.0.2.1/33: the prefix length must be 0..32" \
  attach $IF --vip 192.0.2.1/33
check "--vip not an address" 2 "--vip: 2001:db8::g: not an IPv4 or IPv6 address" \
  attach $IF --vip 2001:db8::1 --vip 2001:db8::g
check "--vip without a value" 2 "--vip: 1 required" attach $IF --vip
check "65 VIP prefixes" 2 "--vip: at most 64 prefixes, got 65" attach $IF "${vips[@]}" --vip 198.51.100.1
check "--vip is attach's" 2 "not expected: 192.0.2.1 --vip" status $IF --vip 192.0.2.1
check "--allow-source is attach's" 2 "not expected: 10.0.0.1 --allow-source" detach $IF --allow-source 10.0.0.1
check "keeld's pin root" 2 "--pin-root: '/sys/fs/bpf/keel/' is keeld's pin root" \
  detach $IF --pin-root /sys/fs/bpf/keel/
check "below keeld's pin root" 2 "--pin-root: '/sys/fs/bpf/keel/x' is keeld's pin root" \
  status $IF --pin-root /sys/fs/bpf/keel/x
check "bad mode" 2 "--mode: fast not in {native,generic}" attach $IF --mode fast
check "bad output format" 2 "--output: yaml not in {table,json}" status $IF -o yaml
check "--version" 0 "keel-decap " --version
if ! [[ $("$DECAP" --version 2>&1) =~ ^keel-decap\ [0-9]+\.[0-9]+ ]]; then
  echo "FAIL: --version does not print 'keel-decap VERSION': $("$DECAP" --version 2>&1)"
  fail=1
fi
# Good arguments get as far as the interface lookup (nothing before it
# changes the system): 16 prefixes, IFACE after the options, one value each.
check "16 prefixes accepted; the missing interface named" 1 "no interface 'nosuchif0'" \
  attach "${prefixes[@]}" $IF --mode generic --pin-root "$pins"
check "64 VIP prefixes accepted with 16 sources" 1 "no interface 'nosuchif0'" \
  attach "${prefixes[@]}" "${vips[@]}" $IF --pin-root "$pins"
check "status when not attached: exit 3" 3 "not attached to $IF" status $IF --pin-root "$pins"
check "status -o json when not attached" 3 '{"interface":"nosuchif0","attached":false}' \
  status $IF -o json --pin-root "$pins"
check "detach when not attached" 1 "not attached to $IF by keel-decap (no $pins/$IF/link)" \
  detach $IF --pin-root "$pins"
# -o on every command (habit 9): table is the default; json makes a failure
# keelctl's error object on stdout, alone, exit 1 (usage: 2); the message
# stays on stderr.
check_stdout() {  # description, expected rc, expected stdout (exactly), args...
  local desc=$1 want_rc=$2 want_out=$3
  shift 3
  local out rc
  out=$("$DECAP" "$@" 2>/dev/null)
  rc=$?
  if [ "$rc" -ne "$want_rc" ] || [ "$out" != "$want_out" ]; then
    echo "FAIL: $desc: rc=$rc (want $want_rc), stdout '$out' (want '$want_out')"
    fail=1
  else
    echo "ok: $desc"
  fi
}
check "detach -o table" 1 "not attached to $IF by keel-decap" detach $IF -o table --pin-root "$pins"
check "status -o table" 3 "keel-decap: not attached to $IF" status $IF --pin-root "$pins" -o table
err=$("$DECAP" detach $IF -o json --pin-root "$pins" 2>&1 >/dev/null)
if [ "$err" = "keel-decap: not attached to $IF by keel-decap (no $pins/$IF/link)" ]; then
  echo "ok: detach -o json: the message on stderr too"
else
  echo "FAIL: detach -o json: stderr '$err'"
  fail=1
fi
check_stdout "detach -o json when not attached" 1 \
  '{"error":{"code":"failed","message":"not attached to nosuchif0 by keel-decap (no '"$pins"'/nosuchif0/link)"}}' \
  detach $IF -o json --pin-root "$pins"
check_stdout "attach --output json, no such interface" 1 \
  '{"error":{"code":"failed","message":"no interface '"'nosuchif0'"'"}}' \
  attach $IF --output json --pin-root "$pins"
check_stdout "attach -o json, a usage error" 2 \
  '{"error":{"code":"usage","message":"--mode: fast not in {native,generic}"}}' \
  attach $IF --mode fast -o json
check_stdout "-o json, an unknown command" 2 \
  '{"error":{"code":"usage","message":"unknown command '"'frob'"' (attach, detach or status)"}}' \
  frob $IF -o json
check_stdout "detach -o table prints nothing on stdout when it fails" 1 "" detach $IF --pin-root "$pins"
if [ -n "$(ls -A "$pins")" ]; then
  echo "FAIL: something was written under --pin-root: $(ls -A "$pins")"
  fail=1
fi
if [ -n "$MAN" ]; then
  for opt in $(for c in attach detach status; do "$DECAP" $c --help; done | grep -o -- ' --*[a-z][a-z-]*' | sort -u); do
    if grep -qF -- "${opt//-/\\-}" "$MAN"; then
      echo "ok: keel-decap.8 documents $opt"
    else
      echo "FAIL: keel-decap.8 does not document $opt"
      fail=1
    fi
  done
fi
exit $fail
