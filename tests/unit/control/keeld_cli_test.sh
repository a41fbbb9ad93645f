#!/bin/bash
# keeld's command line without a data plane: --version, --check-config exit
# codes and messages, and a dpdk start that fails cleanly. Uses `lo` (always
# present) as the interface so no netns is needed; nothing is attached. With
# a second argument (keeld.8), also checks the man page documents every option.
set -u
KEELD=$1
MAN=${2:-}
dir=$(mktemp -d)
# EAL keeps an (empty) runtime directory per --file-prefix; each DPDK start
# leaves its port's lock file in keeld's one lock directory (state_files.h):
# ports named for this run, so removing theirs touches no other keeld's.
nosuch=net_nosuch$$
null=net_null_kc$$
trap 'rm -rf "$dir" "/var/run/dpdk/keeld-cli-$$"; rm -f "/run/keel/locks/dpdk-$nosuch" "/run/keel/locks/dpdk-$null" "/run/keel/locks/dpdk-lo"' EXIT
CLI=$KEELD
# shellcheck source=cli_check.sh
source "$(dirname "$0")/cli_check.sh"

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
# kind dpdk over a net_null port named for this run. A name no driver takes
# (a misspelt vdev: the port, an eal_args --vdev) or a driver path (-d) that
# does not load is refused by --check-config, with its line, as EAL's start
# would refuse it; a port its driver refuses fails the start: EAL starts
# (no hugepages, no PCI, no files), the probe fails, keeld says which key
# and why, and exits 1.
dpdk_yaml() {  # extra line for the dpdk block
  cat <<YAML
dataplane:
  kind: dpdk
  dpdk:
    eal_args: [--no-huge, -m, "64", --no-pci, --no-shconf, --no-telemetry, --file-prefix, keeld-cli-$$, --lcores, "0@0,1@0"]
    port: $null
    workers: [1]
$1
node: {tunnel_source_v4: 10.0.0.2, next_hop_mac: "02:00:00:00:00:01"}
limits: {conn_table_size: 10000}
services:
  - {name: web, vip: 192.0.2.10, port: 80, protocol: tcp, reals: [{address: 10.0.1.11}, {address: 10.0.1.12}]}
YAML
}
dpdk_yaml "" > "$dir/dpdk.yaml"
sed "s/port: $null/port: \"$null,nosuchkey=1\"/" "$dir/dpdk.yaml" > "$dir/dpdk-refused.yaml"
sed "s/port: $null/port: $nosuch/" "$dir/dpdk.yaml" > "$dir/dpdk-nosuch.yaml"
sed "s|--no-telemetry,|--no-telemetry, --vdev, \"$nosuch,x=1\",|" "$dir/dpdk.yaml" > "$dir/dpdk-vdev.yaml"
sed "s|--no-telemetry,|--no-telemetry, -d, \"$dir/none.so\",|" "$dir/dpdk.yaml" > "$dir/dpdk-plugin.yaml"
dpdk_yaml "    rx_desc: 512" > "$dir/dpdk-typo.yaml"
# What EAL would refuse at start, said by --check-config: a worker that is
# not an lcore of eal_args; a CPU the host does not have (127: RTE_MAX_LCORE
# - 1, skipped on a host that has it).
sed 's/workers: \[1\]/workers: [2]/' "$dir/dpdk.yaml" > "$dir/dpdk-lcore.yaml"
sed 's/"0@0,1@0"/"0@0,1@127"/' "$dir/dpdk.yaml" > "$dir/dpdk-cpu.yaml"
# A worker lcore EAL made a service core (-s): refused at start by name.
sed 's/"0@0,1@0"]/"0@0,1@0", -s, "0x2"]/' "$dir/dpdk.yaml" > "$dir/dpdk-service.yaml"

check "version" 0 "keeld " --version
check "valid config" 0 "OK (1 services, 2 reals)" --check-config "$dir/good.yaml"
check "invalid config names line and key" 1 \
  "bad.yaml:10: services[0].reals[1].weight: must be an integer 0..65535, got \"abc\"" \
  --check-config "$dir/bad.yaml"
check "invalid config refuses to run" 1 "nothing applied" --config "$dir/bad.yaml"
# A start's config errors are log records, as a reload's are (one grep of the
# journal finds both).
check "a start's config error is a config_error record" 1 \
  "event=config_error error=\"$dir/bad.yaml:10: services[0].reals[1].weight: must be an integer 0..65535" \
  --config "$dir/bad.yaml"
check "a refused start ends with start_rejected" 1 "event=start_rejected config=$dir/bad.yaml errors=1" \
  --config "$dir/bad.yaml"
check "missing interface" 1 "noif.yaml:1: dataplane.interface: no such network interface \"nosuchif0\"" \
  --check-config "$dir/noif.yaml"
check "missing file" 1 "cannot open" --check-config "$dir/none.yaml"
check "dpdk config valid" 0 "OK (1 services, 2 reals)" --check-config "$dir/dpdk.yaml"
check "dpdk key typo" 1 "dpdk-typo.yaml:7: dataplane.dpdk.rx_desc: unknown key" \
  --check-config "$dir/dpdk-typo.yaml"
check "dpdk worker not an EAL lcore" 1 \
  "dpdk-lcore.yaml:6: dataplane.dpdk.workers[0]: lcore 2 is not one EAL starts (eal_args give --lcores 0@0,1@0)" \
  --check-config "$dir/dpdk-lcore.yaml"
if [ ! -e /sys/devices/system/cpu/cpu127 ]; then
  check "dpdk lcore on a CPU the host lacks" 1 \
    "dpdk-cpu.yaml:4: dataplane.dpdk.eal_args: --lcores 0@0,1@127 runs lcores on CPU 127, not online on this host" \
    --check-config "$dir/dpdk-cpu.yaml"
fi
check "dpdk port no driver takes" 1 \
  "dpdk-nosuch.yaml:5: dataplane.dpdk.port: no DPDK driver takes the name \"$nosuch\"" \
  --check-config "$dir/dpdk-nosuch.yaml"
check "dpdk port no driver takes: the start is refused before EAL" 1 \
  "event=config_error error=\"$dir/dpdk-nosuch.yaml:5: dataplane.dpdk.port: no DPDK driver takes the name" \
  --config "$dir/dpdk-nosuch.yaml"
check "dpdk --vdev no driver takes" 1 \
  "dpdk-vdev.yaml:4: dataplane.dpdk.eal_args[7]: --vdev \"$nosuch,x=1\": no DPDK driver takes the name \"$nosuch\"" \
  --check-config "$dir/dpdk-vdev.yaml"
check "dpdk -d that does not load" 1 \
  "dpdk-plugin.yaml:4: dataplane.dpdk.eal_args[7]: -d \"$dir/none.so\": EAL cannot load this driver path: $dir/none.so: cannot open shared object file" \
  --check-config "$dir/dpdk-plugin.yaml"
check "dpdk port its driver refuses" 1 \
  "dataplane.dpdk.port: cannot probe \\\"$null,nosuchkey=1\\\": its driver refused it" \
  --config "$dir/dpdk-refused.yaml"
check "dpdk worker on a service core" 1 "dpdk.workers: lcore 1 is a service core" \
  --config "$dir/dpdk-service.yaml"
# A metrics port in use fails the start before the data plane (no EAL).
/usr/bin/python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); time.sleep(30)' > "$dir/busy.port" &
busy=$!
for _ in $(seq 50); do [ -s "$dir/busy.port" ] && break; sleep 0.1; done
port=$(cat "$dir/busy.port")
dpdk_yaml "metrics: {address: \"127.0.0.1:$port\"}" > "$dir/dpdk-metrics.yaml"
out=$("$KEELD" --config "$dir/dpdk-metrics.yaml" 2>&1); rc=$?
kill "$busy" 2>/dev/null
if [ "$rc" -eq 1 ] && grep -qF "metrics: cannot listen on 127.0.0.1:$port: Address already in use" <<<"$out" &&
   ! grep -q "EAL" <<<"$out"; then
  echo "ok: a busy metrics port fails the start before the data plane"
else
  echo "FAIL: a busy metrics port: rc $rc"; echo "$out"; fail=1
fi
# A metrics address this host does not have (TEST-NET-1): the check says
# so at its line, where the start failed to listen.
sed 's|^node:|metrics: {address: "192.0.2.77:9477"}\nnode:|' "$dir/good.yaml" > "$dir/metrics-away.yaml"
check "a metrics address this host lacks" 1 \
  "metrics-away.yaml:2: metrics.address: cannot listen on 192.0.2.77: Cannot assign requested address" \
  --check-config "$dir/metrics-away.yaml"
# A net_af_xdp port in a keeld without CAP_SYS_ADMIN (keeld.service's
# case): libxdp cannot read its program back, so the start says so before
# EAL runs (it failed with "rx queue 0: Invalid argument" before).
# --check-config, run by hand with the shell's capabilities, does not.
sed "s/port: $null/port: \"net_af_xdp0,iface=lo\"/" "$dir/dpdk.yaml" > "$dir/dpdk-afxdp.yaml"
if out=$(setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin "$KEELD" --config "$dir/dpdk-afxdp.yaml" 2>&1);
   [ $? -eq 1 ] && grep -qF "net_af_xdp loads its XDP program with libxdp, which needs CAP_SYS_ADMIN" <<<"$out" &&
   ! grep -q "EAL:" <<<"$out"; then
  echo "ok: a net_af_xdp port without CAP_SYS_ADMIN is refused at start, before EAL"
else
  echo "FAIL: a net_af_xdp port without CAP_SYS_ADMIN:"; echo "$out"; fail=1
fi
check "a net_af_xdp port with CAP_SYS_ADMIN passes" 0 "OK (1 services, 2 reals)" --check-config "$dir/dpdk-afxdp.yaml"
check "bad log level" 2 "keeld: --log-level: must be one of trace|debug|info|warn|error|off, got \"loud\"" \
  --log-level loud --check-config "$dir/good.yaml"
check "a directory for a file" 1 "$dir: not a regular file" --check-config "$dir"
# A file past the bound is refused there, not read whole (input review L11);
# an endless device or a FIFO is no regular file, refused before any read
# (a FIFO's open waited for a writer).
truncate -s 65M "$dir/huge.yaml"
check "a file over the bound" 1 "$dir/huge.yaml: over 64 MiB: not a keel.yaml keeld reads" \
  --check-config "$dir/huge.yaml"
check "an endless device" 1 "/dev/zero: not a regular file" --check-config /dev/zero
mkfifo "$dir/fifo.yaml"
check "a FIFO" 1 "$dir/fifo.yaml: not a regular file" --check-config "$dir/fifo.yaml"
# A control socket path keeld could not serve (a file there, a file on the
# way) is an error of the file with its line, not a start that fails after
# it programmed the data plane (input review H1).
echo precious > "$dir/notasock"
sed "s|^node:|control: {socket: $dir/notasock, readonly: {socket: $dir/notasock/ro.sock}}\nnode:|" \
  "$dir/good.yaml" > "$dir/sock.yaml"
check "control.socket a regular file" 1 \
  "sock.yaml:2: control.socket: \"$dir/notasock\" exists and is not a socket (keeld does not replace it)" \
  --check-config "$dir/sock.yaml"
check "control.readonly.socket under a file" 1 \
  "sock.yaml:2: control.readonly.socket: \"$dir/notasock/ro.sock\" $dir/notasock is not a directory" \
  --check-config "$dir/sock.yaml"
check "no arguments" 2 "--config FILE" 
check "a second file" 2 'keeld: unexpected argument "'"$dir"'/bad.yaml" (--check-config checks one FILE' \
  --check-config "$dir/good.yaml" "$dir/bad.yaml"
check "a file without --config" 2 'keeld: unexpected argument "'"$dir"'/good.yaml"' "$dir/good.yaml"
check "--config with --check-config" 2 "keeld: --config and --check-config exclude each other" \
  --check-config "$dir/good.yaml" --config "$dir/good.yaml"
check "--detach-on-exit with --check-config" 2 "keeld: --detach-on-exit only applies to --config" \
  --detach-on-exit --check-config "$dir/good.yaml"
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
