#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The lab client: opens COUNT flows to DST:PORT, each from a fresh socket (so
a distinct source port), sends a request and reads the real's name back.

Runs inside the client's network namespace (lab.py starts it). Prints one JSON
object: {"flows": [{"src", "sport", "dst", "dport", "proto", "real"|"error"}]}.
Every flow is bounded by --timeout seconds and --retries attempts, so the whole
run is bounded by sources * count * (retries + 1) * timeout.
"""
import argparse
import json
import socket
import sys


def one_flow(proto, dst, port, src, timeout, payload):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    s.settimeout(timeout)
    try:
        # Bind first so the source port is known even if connect fails; the
        # source address is only chosen (by routing) at connect time.
        s.bind((src or "", 0))
        flow = {"src": src, "sport": s.getsockname()[1], "dst": dst, "dport": port,
                "proto": proto}
        try:
            s.connect((dst, port))
            flow["src"] = s.getsockname()[0]
            s.send(payload)
            data = s.recv(2048)
            name = data.decode(errors="replace").strip()
            if name:
                flow["real"] = name
            else:
                flow["error"] = "empty reply"
        except OSError as e:
            flow["error"] = f"{type(e).__name__}: {e}"
        return flow
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("proto", choices=["tcp", "udp"])
    ap.add_argument("--dst", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--src", action="append", default=[],
                    help="source address to bind; repeat for several (COUNT flows each)")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--retries", type=int, default=0,
                    help="extra attempts (new socket, new port) for a failed flow")
    args = ap.parse_args()

    flows = []
    payload = b"hello keel\n"
    for src in args.src or [None]:
        for _ in range(args.count):
            for attempt in range(args.retries + 1):
                flow = one_flow(args.proto, args.dst, args.port, src, args.timeout, payload)
                if "real" in flow:
                    break
                flow["attempt"] = attempt
            flows.append(flow)
    json.dump({"flows": flows}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
