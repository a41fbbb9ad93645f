#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""failover_bench: time from a real dying to the balancer's last packet to it.

Method. A netns lab (tests/integration/lab.py: client, router, balancer with
keeld on XDP, 3 reals with keel-decap) serves one UDP service, ipip, Maglev
M=65537, with TCP health checks to :8080 every INTERVAL (default 100 ms,
timeout = interval), fall FALL (default 3), rise 2. The client sends a
bounded stream of UDP datagrams to the VIP, each from a fresh socket (a new
source port, so a new flow that the ring places), at RATE per second.
tcpdump on the bridge port facing the balancer records every IPIP packet
the balancer sends, with kernel timestamps, so what is measured is the data
plane's own output, not whether the dead real could still receive.

Each rep: wait until real1 is up in keeld; let traffic flow 0.5 s; kill
real1's server with SIGKILL (its listeners close, as when a service dies on
a live host; t_kill = just before the signal, and "stop took" says when the
process had been reaped); wait; restart it.
Failover = (last IPIP packet to real1) - t_kill. In-run baseline, per rep,
from keeld's own log (ms resolution): detection = health_changed(down) -
t_kill, which fall x interval bounds from below (the checker needs FALL
failed checks, the first at most one interval after the kill), and publish
= real_down (logged after the new ring is live) - health_changed. Packet
resolution: the median gap between packets to real1 before the kill;
"next pkt" is how long after the last packet to real1 the balancer sent its
next packet to any real (a long silence means the client stalled, and the
failover figure of that rep is a lower bound).

Run as root from the source tree after building keeld, keelctl, keel-decap
and bpf/xdp_pass.bpf.o:
    /usr/bin/python3 perf/control/failover_bench.py --build build [--reps 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import lab as labmod  # noqa: E402

SENDER = r"""
import socket, sys, time
dst, port, rate, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
gap, start = 1.0 / rate, time.monotonic()
end, due, sent = start + duration, start, 0
while time.monotonic() < end:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"x", (dst, port))
        sent += 1
    except OSError:
        pass
    s.close()
    due += gap
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
print(sent)
"""

LOG_TS = re.compile(r"^ts=(\S+)Z ")


def log_events(text: str, event: str, real: str, extra: str = "") -> list[float]:
    """Epoch seconds of every `event` record about `real` in keeld's log
    (records are `ts=... level=... event=NAME key=value ...`)."""
    out = []
    for line in text.splitlines():
        tokens = set(line.split())
        if f"event={event}" not in tokens or f"real={real}" not in tokens:
            continue
        if extra and extra not in tokens:
            continue
        m = LOG_TS.match(line)
        if m:
            t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
            out.append(t.timestamp())
    return out


def ipip_packets(pcap: Path) -> list[tuple[float, str]]:
    """(timestamp, outer destination) of every packet in the capture."""
    p = labmod.run(["tcpdump", "-r", str(pcap), "-n", "-tt"], timeout=120)
    out = []
    for line in p.stdout.splitlines():
        parts = line.split()
        # "<ts> IP <src> > <dst>: IP ..." ; the outer header comes first.
        if len(parts) > 4 and parts[1] == "IP" and parts[3] == ">":
            out.append((float(parts[0]), parts[4].rstrip(":")))
    return out


def real_state(keeld, real: str) -> str | None:
    p = keeld.keelctl("-o", "json", "service", "show", "web", check=False)
    if p.returncode != 0:
        return None
    doc = json.loads(p.stdout)
    svc = doc.get("service", doc)
    for r in svc.get("reals", []):
        if r.get("address") == real:
            return r.get("state")
    return None


def wait_state(keeld, real: str, want: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if real_state(keeld, real) == want:
            return
        time.sleep(0.05)
    raise labmod.LabError(f"{real} did not become {want} within {timeout}s:\n{keeld.log()}")


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=str(ROOT / "build"), help="meson build dir")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--fall", type=int, default=3)
    ap.add_argument("--rate", type=float, default=600.0, help="client datagrams per second")
    a = ap.parse_args(argv)
    if a.reps < 1 or a.interval_ms < 10 or a.fall < 1 or not 10 <= a.rate <= 5000:
        ap.error("need --reps >= 1, --interval-ms >= 10, --fall >= 1, 10 <= --rate <= 5000")
    if os.geteuid() != 0:
        print("failover_bench: needs root (netns, veth, XDP)", file=sys.stderr)
        return 2

    interval = a.interval_ms / 1000.0
    # After the kill: FALL checks, then generous slack for a loaded machine.
    observe = a.fall * interval + 1.5
    per_rep = 0.5 + observe + 3.0
    print("failover_bench: time from a real's server dying to the balancer's last packet to it")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"kernel {platform.release()}; load average at start: {os.getloadavg()}")
    print(f"method: UDP service, ipip, M=65537, 3 reals; health tcp :8080 every {a.interval_ms} ms, "
          f"timeout {a.interval_ms} ms, fall {a.fall}, rise 2;\n"
          f"        {a.rate:.0f} new flows/s from the client; IPIP packets captured on the "
          f"balancer's bridge port;\n        {a.reps} reps of: SIGKILL real1's server, wait "
          f"{observe:.1f} s, restart. Times in ms from t_kill.")

    lab = labmod.Lab(Path(a.build), n_reals=3)
    for name in ("keeld", "keelctl", "keel-decap"):
        if not lab.has_binary(name):
            print(f"failover_bench: {lab.binary(name)} not built", file=sys.stderr)
            return 2
    lab.up()
    try:
        lab.start_servers(tcp_ports=(80, 8080), udp_ports=(80,))
        lab.decap_attach()
        svc = lab.service("web", 4, 80, "udp", "ipip")
        svc["health"] = {"type": "tcp", "port": 8080, "interval": f"{a.interval_ms}ms",
                         "timeout": f"{a.interval_ms}ms", "rise": 2, "fall": a.fall}
        real = lab.reals[0]
        with lab.keeld(lab.keel_config([svc])) as keeld:
            for r in lab.reals:
                wait_state(keeld, r.v4, "up", 15)
            pcap = lab.tmp / "failover.pcap"
            dump = subprocess.Popen(lab.switch.argv(["tcpdump", "-i", lab.balancer_peer, "-n", "-U",
                                                     "-w", str(pcap), "ip proto 4"]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    start_new_session=True)
            lab._procs.append(dump)  # torn down with the lab if we fail
            time.sleep(1.0)  # tcpdump attaches
            duration = a.reps * (per_rep + 2.0) + 5.0
            sender = subprocess.Popen(lab.client.argv([labmod.PYTHON, "-c", SENDER, lab.vip4, "80",
                                                       str(a.rate), str(duration)]),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      start_new_session=True)
            lab._procs.append(sender)
            kills, restarts, stops = [], [], []
            for _ in range(a.reps):
                wait_state(keeld, real.v4, "up", 15)
                time.sleep(0.5)
                # SIGKILL: the kernel closes the listeners as the process
                # exits, within a millisecond or two (SIGTERM would leave it
                # to a Python interpreter's teardown, tens of ms on a loaded
                # box). t_kill is just before the signal; "stop took" is
                # the time until the process was reaped: the death is
                # somewhere in between.
                proc = lab._server_of[real.role]
                t0 = time.time()
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                kills.append(t0)
                stops.append(time.time() - t0)
                lab.stop_server(real)  # lab bookkeeping; the process is gone
                time.sleep(observe)
                restarts.append(time.time())
                lab.restart_server(real)
            wait_state(keeld, real.v4, "up", 15)
            os.killpg(sender.pid, signal.SIGTERM)
            sender.wait(timeout=10)
            time.sleep(0.3)
            os.killpg(dump.pid, signal.SIGINT)
            dump.wait(timeout=10)
            log = keeld._log_text()
        packets = ipip_packets(pcap)
    finally:
        lab.down()

    to_real = [t for t, dst in packets if dst == real.v4]
    all_times = sorted(t for t, _ in packets)
    changed = log_events(log, "health_changed", real.v4, "state=down")
    downs = log_events(log, "real_down", real.v4)
    rows = []
    print(f"\n{len(packets)} IPIP packets captured, {len(to_real)} to {real.v4}")
    print(f"{'rep':>3} {'failover':>9} {'detect':>8} {'publish':>8} {'gap before':>11} {'stop took':>10} "
          f"{'next pkt':>9}")
    for i, (k, r) in enumerate(zip(kills, restarts)):
        before = [t for t in to_real if k - 0.5 <= t < k]
        after = [t for t in to_real if k <= t < r]
        last = max(after) if after else (max(before) if before else None)
        det = next((t for t in changed if k - 0.05 <= t < r), None)
        pub = next((t for t in downs if det is not None and det <= t < r), None)
        gaps = [b - a_ for a_, b in zip(before, before[1:])]
        # The next packet the balancer sent to anyone after that last one:
        # if it came late, the client stalled (a loaded box) and the switch
        # happened somewhere in that silence, so failover is a lower bound.
        nxt = next((t for t in all_times if last is not None and t > last), None)
        row = {"failover": (last - k) * 1e3 if last is not None else None,
               "detect": (det - k) * 1e3 if det is not None else None,
               "publish": (pub - det) * 1e3 if pub is not None and det is not None else None,
               "gap": med(gaps) * 1e3 if gaps else None, "stop": stops[i] * 1e3,
               "next": (nxt - last) * 1e3 if nxt is not None else None}
        rows.append(row)
        fmt = lambda v: f"{v:8.1f}" if v is not None else "       -"  # noqa: E731
        print(f"{i + 1:>3} {fmt(row['failover']):>9} {fmt(row['detect'])} {fmt(row['publish'])} "
              f"{fmt(row['gap']):>11} {fmt(row['stop']):>10} {fmt(row['next']):>9}"
              + ("  (client stalled: failover is a lower bound)"
                 if row["next"] is not None and row["gap"] is not None and row["next"] > 5 * row["gap"]
                 else ""))

    def col(key):
        return [r[key] for r in rows if r[key] is not None]
    base = a.fall * a.interval_ms
    print(f"\nmedian failover {med(col('failover')):.1f} ms (min {min(col('failover'), default=float('nan')):.1f}, "
          f"max {max(col('failover'), default=float('nan')):.1f}); "
          f"baseline fall x interval = {base} ms -> ratio {med(col('failover')) / base:.2f}")
    print(f"median detection {med(col('detect')):.1f} ms (health_changed down after the kill; "
          f"between (fall-1) x interval and fall x interval + timeout expected)")
    print(f"median publish {med(col('publish')):.1f} ms (health_changed -> real_down: ring rebuilt "
          f"and live; log resolution 1 ms)")
    print(f"median packet gap to real1 before the kill {med(col('gap')):.1f} ms (the failover "
          f"figure's resolution)")
    print(f"load average at end: {os.getloadavg()}")
    bad = [i + 1 for i, r in enumerate(rows) if r["failover"] is None or r["detect"] is None]
    if bad:
        print(f"incomplete reps (no packet or no log record): {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
