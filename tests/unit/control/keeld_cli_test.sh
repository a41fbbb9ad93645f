#!/bin/bash
# keeld's command line without a data plane: --version, --check-config exit
# codes and messages, and the dpdk refusal. Uses `lo` (always present) as the
# interface so no netns is needed; nothing is attached. With a second
# argument (keeld.8), also checks the man page documents every option.
set -u
KEELD=$1
MAN=${2:-}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
check() {  # description, expected rc, expected output substring, args...
  local desc=$1 want_rc=$2 want_out=$3
  shift 3
  local out rc
  out=$("$KEELD" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want_rc" ] || [[ "$out" != *"$want_out"* ]]; then
    echo "FAIL: $desc: rc=$rc (want $want_rc), output:"
    echo "$out"
    fail=1
  else
    echo "ok: $desc"
  fi
}

cat > "$dir/good.yaml" <<'YAML'
dataplane: {kind: xdp, interface: lo}
node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: "02:00:00:00:00:01"}
services:
  - name: web
    vip: 192.0.2.10
    port: 80
    protocol: tcp
    reals:
      - {address: 10.0.1.11, weight: 100}
      - {address: 10.0.1.12}
YAML
cat > "$dir/bad.yaml" <<'YAML'
dataplane: {kind: xdp, interface: lo}
node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: "02:00:00:00:00:01"}
services:
  - name: web
    vip: 192.0.2.10
    port: 80
    protocol: tcp
    reals:
      - {address: 10.0.1.11, weight: 100}
      - {address: 10.0.1.12, weight: abc}
YAML
sed 's/interface: lo/interface: nosuchif0/' "$dir/good.yaml" > "$dir/noif.yaml"
sed 's/kind: xdp/kind: dpdk/' "$dir/good.yaml" > "$dir/dpdk.yaml"

check "version" 0 "keeld " --version
check "valid config" 0 "OK (1 services, 2 reals)" --check-config "$dir/good.yaml"
check "invalid config names line and key" 1 \
  "bad.yaml:10: services[0].reals[1].weight: must be an integer 0..65535, got \"abc\"" \
  --check-config "$dir/bad.yaml"
check "invalid config refuses to run" 1 "nothing applied" --config "$dir/bad.yaml"
check "missing interface" 1 "noif.yaml:1: dataplane.interface: no such network interface \"nosuchif0\"" \
  --check-config "$dir/noif.yaml"
check "missing file" 1 "cannot open" --check-config "$dir/none.yaml"
check "dpdk not built in" 2 "dpdk data plane not built into this keeld yet" --config "$dir/dpdk.yaml"
check "bad log level" 2 "log level" --log-level loud --check-config "$dir/good.yaml"
check "no arguments" 2 "--config FILE" 
if [ -n "$MAN" ]; then
  for opt in $("$KEELD" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    if grep -qF -- "${opt//-/\\-}" "$MAN"; then
      echo "ok: keeld.8 documents $opt"
    else
      echo "FAIL: keeld.8 does not document $opt"
      fail=1
    fi
  done
fi
exit $fail
