#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""start_memory: keeld's resident memory after it starts S services of R reals.

Method. For each (S, R), in a network namespace of its own with one veth
pair (keel's XDP program on one end; no traffic is sent), keeld starts from a generated keel.yaml: S TCP services, ipip,
M = 65537, R reals each, no health checks (every real up, so every ring is
built and published), metrics off, its own control socket and a private
bpffs. Once keeld answers `keelctl daemon status` (it serves requests only
after the start has been applied) and a further second has passed, the
tool reads VmRSS and VmHWM (the peak) of keeld from /proc/PID/status, then
stops it (SIGTERM) and removes the namespace. Baseline, in the same run:
the same keeld with `services: []`. Each row prints RSS, the peak, and
what the services add over the baseline per real. With --health every
service has a tcp check (interval 10 s, timeout 1 s) to port 80 of reals
whose addresses are local to the namespace (a `local` route on lo), where
nothing listens: each check is refused at once and every real is down
while its checks go on; the reading is taken --settle seconds (default 12)
after the first answer, once every real's first check has run (they start
at 5,000 a second). With --check, keeld is then asked to check its own
file (`keelctl config check`, which parses it whole on keeld's loop and
applies nothing) and read again --settle seconds after the answer: what a
check leaves resident.

Run as root from the source tree after building keeld and keelctl:
    /usr/bin/python3 perf/control/start_memory.py --build build [--sizes 1000x10,100x100,200x200]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = open("/proc/loadavg").read().split()[:3]
    return f"{platform.node()}: {os.cpu_count()} CPUs ({model}), kernel {platform.release()}, load {' '.join(load)}"


def config(services: int, reals: int, sock: str, health: bool = False) -> str:
    out = ["dataplane: {kind: xdp, interface: sm0, xdp_mode: native}",
           'node: {tunnel_source_v4: 10.200.0.2, next_hop_mac: "02:00:00:00:00:01"}',
           f"limits: {{max_services: {max(1024, services)}, max_reals: {max(16384, services * reals)}}}",
           "metrics: {enabled: false}",
           f"control: {{socket: {sock}}}"]
    if services == 0:
        out.append("services: []")
        return "\n".join(out) + "\n"
    out.append("services:")
    for s in range(services):
        out += [f"  - name: s{s}", f"    vip: 198.18.{s // 250}.{s % 250 + 1}", "    port: 80",
                "    protocol: tcp"]
        if health:
            out.append("    health: {type: tcp, port: 80, interval: 10s, timeout: 1s}")
        out.append("    reals:")
        out += [f"      - {{address: 10.{100 + r // 62500}.{(r // 250) % 250}.{r % 250 + 1}}}" for r in range(reals)]
    return "\n".join(out) + "\n"


def measure(build: str, services: int, reals: int, timeout: float, health: bool = False,
            settle: float = 1.0, check: bool = False) -> tuple[float, float, float, float | None]:
    """(RSS MB, peak MB, seconds to the first answer, RSS MB after a config check or None) of keeld
    with this config."""
    ns = f"km{os.getpid()}-{services}x{reals}"
    tmp = tempfile.mkdtemp(prefix="keel-start-memory-")
    keeld = None
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        run = lambda *a: subprocess.run(["ip", "-n", ns, *a], check=True)
        run("link", "add", "sm0", "type", "veth", "peer", "name", "sm1")
        run("link", "set", "sm0", "up")
        run("link", "set", "sm1", "up")
        run("addr", "add", "10.200.0.2/24", "dev", "sm0")
        run("link", "set", "lo", "up")
        # The reals' addresses (10.100.0.0/14) are this namespace's own: a
        # check's connect is refused at once (nothing listens on :80).
        run("route", "add", "local", "10.100.0.0/14", "dev", "lo")
        sock = os.path.join(tmp, "keel.sock")
        path = os.path.join(tmp, "keel.yaml")
        with open(path, "w") as f:
            f.write(config(services, reals, sock, health))
        os.mkdir(os.path.join(tmp, "bpf"))
        # A private mount namespace with a bpffs of its own: no pins of this
        # run outlive it or meet another keeld's.
        with open(os.path.join(tmp, "keeld.log"), "w") as log:
            keeld = subprocess.Popen(
                ["ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private", "sh", "-c",
                 'mount -t bpf bpf /sys/fs/bpf && exec "$0" --config "$1"',
                 os.path.join(build, "src/daemon/keeld"), path],
                stdout=subprocess.DEVNULL, stderr=log)
        began = time.monotonic()
        while True:
            if keeld.poll() is not None:
                raise RuntimeError(f"keeld exited {keeld.returncode}: {open(os.path.join(tmp, 'keeld.log')).read()[-2000:]}")
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"keeld did not answer within {timeout} s")
            if subprocess.run([os.path.join(build, "src/cli/keelctl"), "--socket", sock, "--timeout", "5",
                               "daemon", "status"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        ready = time.monotonic() - began
        time.sleep(settle)

        def status() -> dict[str, float]:
            fields = {}
            # ip netns exec, unshare and sh each exec the next without a fork:
            # the pid is keeld's (and its Name says so).
            with open(f"/proc/{keeld.pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    fields[k] = v.strip()
            if "keeld" not in fields.get("Name", ""):
                raise RuntimeError(f"pid {keeld.pid} is {fields.get('Name')}, not keeld")
            return {k: float(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}

        started = status()
        checked = None
        if check:
            r = subprocess.run([os.path.join(build, "src/cli/keelctl"), "--socket", sock, "--timeout", str(timeout),
                            "config", "check", path], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"keelctl config check: exit {r.returncode}: {r.stdout}{r.stderr}")
            time.sleep(settle)
            checked = status()["VmRSS"]
        return started["VmRSS"], started["VmHWM"], ready, checked
    finally:
        if keeld and keeld.poll() is None:
            keeld.send_signal(signal.SIGTERM)
            try:
                keeld.wait(30)
            except subprocess.TimeoutExpired:
                keeld.kill()
                keeld.wait()
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--sizes", default="1000x10,100x100,200x200", help="SxR,... (services x reals each)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds a start may take")
    ap.add_argument("--health", action="store_true", help="a tcp check on every real (refused at once)")
    ap.add_argument("--settle", type=float, help="seconds after the first answer to read (default 1, 12 with --health)")
    ap.add_argument("--check", action="store_true", help="then `keelctl config check` of the file, and read again")
    a = ap.parse_args()
    # meson's benchmark timeout ends the run with SIGTERM: as an exception,
    # so measure()'s cleanup still stops keeld and removes the namespace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if os.geteuid() != 0:
        print("start_memory: run as root", file=sys.stderr)
        return 2
    sizes = [tuple(int(x) for x in s.split("x")) for s in a.sizes.split(",")]
    print(__doc__.split("\n\n")[1].replace("\n", " "))
    print(f"machine: {machine()}")
    settle = a.settle if a.settle is not None else 12.0 if a.health else 1.0
    print(f"health checks: {'tcp, refused' if a.health else 'none'}; reading {settle:g} s after the first answer")
    base, base_peak, base_ready, _ = measure(a.build, 0, 0, a.timeout, settle=settle)
    print(f"baseline (services: []): RSS {base:.1f} MB, peak {base_peak:.1f} MB, first answer after {base_ready:.1f} s")
    for s, r in sizes:
        rss, peak, ready, checked = measure(a.build, s, r, a.timeout, a.health, settle, a.check)
        print(f"{s} services x {r} reals: RSS {rss:.1f} MB, peak {peak:.1f} MB, first answer after {ready:.1f} s; "
              f"over the baseline {rss - base:.1f} MB, {(rss - base) * 1024 / (s * r):.2f} KiB a real"
              + (f"; after a config check RSS {checked:.1f} MB ({checked - rss:+.1f})" if checked is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
