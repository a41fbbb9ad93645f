#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""keel demo: a lab of network namespaces built on the spot (client, router,
balancer, three reals running small HTTP servers), keeld balancing a web
service through the VIP, and what an operator sees with keelctl:

  1. spread:   many HTTP requests, each on a new connection, over the reals;
  2. failover: one real's server stops, the health checker takes it out,
               traffic moves to the others; the server returns, so does it;
  3. drain:    an open keep-alive connection stays on its real while new
               connections avoid it; undrain brings it back.

Run through scripts/demo (which installs and builds first). Everything is
torn down on exit, including Ctrl-C. --ci makes the demo assert every claim
and exit non-zero if one does not hold.
"""
import argparse
import concurrent.futures
import http.client
import json
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import lab as labmod  # noqa: E402

REQUESTS = 90
PORT = 80
# Health checks: HTTP GET /healthz every 300 ms, 2 failures to go down and
# 2 passes to come back, so each transition takes about a second.
HEALTH = {"type": "http", "path": "/healthz", "interval": "300ms", "timeout": "300ms",
          "rise": 2, "fall": 2}
STATE_WAIT_S = 20.0


def say(msg):
    print(f"==> {msg}", flush=True)


INDENT = "    "
# keelctl fits its tables to $COLUMNS (default 120); the demo indents them.
TABLE_COLUMNS = str(120 - len(INDENT))


def indent(text):
    return "\n".join(INDENT + line for line in text.rstrip().splitlines())


class Client:
    """HTTP from the client's network namespace, in this process: one worker
    thread enters the namespace (setns moves only the calling thread) and
    makes every connection, so sockets are born there. No fork per request."""

    def __init__(self, ns: str):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=labmod.enter_netns,
                                                          initargs=(ns,))

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _do(self, fn, *args):
        return self.pool.submit(fn, *args).result(timeout=60)

    @staticmethod
    def _get(conn: http.client.HTTPConnection) -> str:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace").strip()
        if resp.status != 200 or not body:
            raise OSError(f"HTTP {resp.status} {body!r}")
        return body

    def requests(self, host: str, count: int, timeout: float = 1.0) -> tuple[Counter, list[str]]:
        """COUNT requests, each on a new connection (a new source port, so a
        new flow). Returns the real that answered each, and the errors."""
        def run():
            served, errors = Counter(), []
            for _ in range(count):
                conn = http.client.HTTPConnection(host, PORT, timeout=timeout)
                try:
                    served[self._get(conn)] += 1
                except (OSError, http.client.HTTPException) as e:
                    errors.append(f"{type(e).__name__}: {e}")
                finally:
                    conn.close()
            return served, errors
        return self._do(run)

    def open(self, host: str) -> http.client.HTTPConnection:
        """A keep-alive connection (created in the namespace, usable here)."""
        def run():
            conn = http.client.HTTPConnection(host, PORT, timeout=3)
            conn.connect()
            return conn
        return self._do(run)

    def ask(self, conn: http.client.HTTPConnection) -> str:
        try:
            return self._get(conn)
        except (OSError, http.client.HTTPException) as e:
            return f"error: {type(e).__name__}: {e}"


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def bars(served: Counter, errors: list[str], reals: list[str]):
    total = sum(served.values()) + len(errors)
    for name in reals:
        n = served.get(name, 0)
        print(f"    {name:6} {n:4}  {'#' * round(40 * n / max(total, 1))}")
    if errors:
        print(f"    failed {len(errors):4}  (first: {errors[0]})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build"), help="meson build dir")
    ap.add_argument("--dataplane", default="xdp", choices=sorted(labmod.DATAPLANES),
                    help="data plane for keeld, passed to the lab")
    ap.add_argument("--ci", action="store_true",
                    help="assert every claim and exit 1 if one does not hold (non-interactive)")
    args = ap.parse_args()
    # meson stops a test with SIGTERM; a shell may start us with SIGINT
    # ignored. Both must reach the finally below and tear the lab down.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    problems = []
    started = time.monotonic()

    def check(cond, what):
        if not cond:
            problems.append(what)
            print(f"    !! {what}", flush=True)
        return cond

    lab = labmod.Lab(build_dir=args.build, dataplane=args.dataplane)
    client = None
    try:
        say("building the lab: client -- router -- LAN -- balancer + real1..3 (HTTP on :80)")
        lab.up()
        lab.start_servers(tcp_ports=(PORT,), udp_ports=())
        lab.decap_attach()
        client = Client(lab.client.ns)
        names = [r.role for r in lab.reals]
        svc = lab.service("web", 4, port=PORT, protocol="tcp", forwarding="ipip")
        svc["health"] = HEALTH
        vip = svc["vip"]
        say(f"starting keeld ({args.dataplane}): service web {vip}:{PORT}/tcp, ipip, "
            f"3 reals, HTTP health checks")
        with lab.keeld(lab.keel_config([svc])) as keeld:
            def ctl(*argv):
                return keeld.keelctl(*argv, env={"COLUMNS": TABLE_COLUMNS}).stdout

            def states():
                out = json.loads(ctl("-o", "json", "service", "show", "web"))
                out = out.get("service", out)
                return {r["address"]: r["state"] for r in out["reals"]}

            def wait_state(addr, want, what):
                print(f"    waiting for the health checker: {what} ", end="", flush=True)
                deadline = time.monotonic() + STATE_WAIT_S
                got = None
                while time.monotonic() < deadline:
                    got = states()
                    if all(got.get(a) == want for a in addr):
                        print(" done", flush=True)
                        return True
                    print(".", end="", flush=True)
                    time.sleep(0.3)
                print(" timed out", flush=True)
                return check(False, f"{what}: states {got} within {STATE_WAIT_S}s")

            wait_state([r.v4 for r in lab.reals], "up", "every real up")

            # 1. Spread.
            say(f"{REQUESTS} HTTP requests to http://{vip}/, each on a new connection; "
                "who answered:")
            served, errors = client.requests(vip, REQUESTS)
            bars(served, errors, names)
            check(not errors and all(served[n] >= REQUESTS // 10 for n in names),
                  f"expected every real to serve >= {REQUESTS // 10} requests and none to "
                  f"fail, got {dict(served)}, {len(errors)} failed")
            say("keelctl stats web (verdict reasons that counted, then per real):")
            print(indent("\n".join(line for line in ctl("stats", "web").splitlines()
                                   if not re.fullmatch(r"\s*[a-z_0-9]+\s+0\s+0\s*", line))))
            stats = json.loads(ctl("-o", "json", "stats", "web"))
            per_real = {r["address"]: r["packets"] for s in stats["services"] for r in s["reals"]}
            check(all(per_real.get(r.v4, 0) > 0 for r in lab.reals),
                  f"keelctl stats shows a real without packets: {per_real}")

            # 2. Failover by health check.
            gone = lab.reals[1]
            say(f"stopping the HTTP server on {gone.role} ({gone.v4})")
            lab.stop_server(gone)
            wait_state([gone.v4], "down", f"{gone.role} down")
            say("keelctl health show web:")
            print(indent(ctl("health", "show", "web")))
            say(f"{REQUESTS} requests again:")
            served, errors = client.requests(vip, REQUESTS)
            bars(served, errors, names)
            check(not errors and gone.role not in served and len(served) == 2,
                  f"expected the two live reals only and no failure, got {dict(served)}, "
                  f"{len(errors)} failed")
            say(f"starting {gone.role}'s server again")
            lab.restart_server(gone)
            wait_state([gone.v4], "up", f"{gone.role} up")
            say(f"{REQUESTS} requests: {gone.role} is back in the ring")
            served, errors = client.requests(vip, REQUESTS)
            bars(served, errors, names)
            check(not errors and set(served) == set(names),
                  f"expected all three reals again, got {dict(served)}, {len(errors)} failed")

            # 3. Drain.
            say("opening a keep-alive HTTP connection to the VIP")
            conn = client.open(vip)
            try:
                first = client.ask(conn)
                print(f"    request 1 on it: answered by {first}")
                if not check(first in names, f"the keep-alive connection got {first!r}"):
                    raise labmod.LabError("no keep-alive connection to drain")
                target = lab.real_by_name(first)
                say(f"keelctl real drain web {target.v4}   ({first}, where that connection is)")
                print(indent(ctl("real", "drain", "web", target.v4)))  # what changed, one line
                print(indent(ctl("service", "list")))
                # What keeps the open connection there: its connection-table
                # entry, which names the drained real and is kept.
                caddr, cport = conn.sock.getsockname()[:2]
                listed = json.loads(ctl("-o", "json", "conns", "web", "--client", caddr))
                mine = [e for e in listed["connections"] if e["client_port"] == cport]
                print("    (Flows: the last periodic count, every metrics.flow_count_interval (1m), here the "
                      "one at keeld's start; keelctl conns web --count counts now)")
                say(f"keelctl conns web --client {caddr}: the open connection's entry (port {cport}):")
                for e in mine:
                    print(f"    {e['client_address']}:{e['client_port']} -> {e['vip']}:{e['port']}  "
                          f"real {e['real']}  {e['state']}, idle {e['idle_ms']} ms")
                check(len(mine) == 1 and mine[0]["real"] == target.v4 and mine[0]["kept"],
                      f"expected one kept entry naming {target.v4} for port {cport}, got {mine}")
                again = client.ask(conn)
                print(f"    request 2 on the open connection: answered by {again}")
                check(again == first, f"the established connection moved: {first} -> {again}")
                say(f"{REQUESTS} new connections while {first} drains:")
                served, errors = client.requests(vip, REQUESTS)
                bars(served, errors, names)
                check(not errors and first not in served and len(served) == 2,
                      f"expected new flows to avoid {first}, got {dict(served)}, "
                      f"{len(errors)} failed")
                again = client.ask(conn)
                print(f"    request 3 on the open connection: answered by {again}")
                check(again == first, f"the established connection moved: {first} -> {again}")
            finally:
                conn.close()
            say(f"keelctl real undrain web {target.v4}")
            print(indent(ctl("real", "undrain", "web", target.v4)))
            say(f"{REQUESTS} new connections: {first} takes new flows again")
            served, errors = client.requests(vip, REQUESTS)
            bars(served, errors, names)
            check(not errors and served[first] > 0,
                  f"expected {first} to serve new flows again, got {dict(served)}")
        say("keeld stopped")
    except KeyboardInterrupt:
        print("\ninterrupted; tearing down", flush=True)
        return 130
    except labmod.LabError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        if client:
            client.close()
        lab.down()
        say("lab torn down")
    if problems:
        print(f"demo: {len(problems)} claim(s) did not hold", file=sys.stderr)
        return 1
    say(f"done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
