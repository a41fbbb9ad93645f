#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""keel demo: a lab of network namespaces built on the spot (client, router,
balancer, three reals), keeld in XDP mode, real traffic through the VIP.

Run through scripts/demo (which installs and builds first). Everything is
torn down on exit, including Ctrl-C. --ci makes the demo assert its claims
and exit non-zero if one does not hold.
"""
import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import lab as labmod  # noqa: E402

FLOWS = 90


def say(msg):
    print(f"==> {msg}", flush=True)


def spread(lab, vip, count=FLOWS):
    flows = lab.flows("tcp", vip, 80, count=count, timeout=1.0, retries=1)
    ok = [f for f in flows if "real" in f]
    return Counter(f["real"] for f in ok), len(flows) - len(ok)


def show(counts, failed):
    total = sum(counts.values())
    for name in sorted(counts):
        bar = "#" * round(40 * counts[name] / max(total, 1))
        print(f"    {name:6} {counts[name]:4}  {bar}")
    if failed:
        print(f"    failed flows: {failed}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build"), help="meson build dir")
    ap.add_argument("--dataplane", default="xdp", choices=sorted(labmod.DATAPLANES))
    ap.add_argument("--ci", action="store_true", help="assert every claim (non-interactive)")
    args = ap.parse_args()
    problems = []

    def check(cond, what):
        if not cond:
            problems.append(what)
            print(f"    !! {what}")

    lab = labmod.Lab(build_dir=args.build, dataplane=args.dataplane)
    try:
        say("building the lab: client -- router -- LAN bridge -- balancer + real1..3")
        lab.up()
        lab.start_servers(tcp_ports=(80,), udp_ports=())
        lab.decap_attach()
        svc = lab.service("web", 4, port=80, protocol="tcp", forwarding="ipip")
        config = lab.keel_config([svc])
        say(f"starting keeld ({args.dataplane}) with service web {svc['vip']}:80/tcp, ipip, 3 reals")
        with lab.keeld(config) as keeld:
            # The first flows may race keeld filling its maps: bounded probe.
            for _ in range(20):
                if "real" in lab.flows("tcp", svc["vip"], 80, count=1, timeout=0.5)[0]:
                    break
            say(f"{FLOWS} TCP connections from the client to the VIP; who answered:")
            counts, failed = spread(lab, svc["vip"])
            show(counts, failed)
            check(failed == 0 and set(counts) == {r.role for r in lab.reals},
                  f"expected all three reals to serve and no failure, got {dict(counts)}")
            reasons = lab.reasons() or {}
            say("balancer verdict counters (XDP): " +
                ", ".join(f"{k}={v}" for k, v in sorted(reasons.items()) if v))
            check(reasons.get("tx_ipip", 0) > 0, "tx_ipip counter did not move")

            gone = lab.reals[1]
            say(f"removing {gone.role} ({gone.v4}) from the config and reloading (SIGHUP)")
            svc2 = dict(svc, reals=[r for r in svc["reals"] if r["address"] != gone.v4])
            keeld.reload(lab.keel_config([svc2]))
            counts, failed = spread(lab, svc["vip"])
            show(counts, failed)
            check(failed == 0 and gone.role not in counts and len(counts) == 2,
                  f"expected traffic on the two remaining reals only, got {dict(counts)}")

            say(f"putting {gone.role} back")
            keeld.reload(config)
            counts, failed = spread(lab, svc["vip"])
            show(counts, failed)
            check(failed == 0 and set(counts) == {r.role for r in lab.reals},
                  f"expected all three reals again, got {dict(counts)}")
        say("stopping keeld: the balancer detaches cleanly")
    except KeyboardInterrupt:
        print("\ninterrupted; tearing down")
        return 130
    finally:
        lab.down()
        say("lab torn down")
    if problems:
        print(f"demo: {len(problems)} claim(s) did not hold", file=sys.stderr)
        return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
