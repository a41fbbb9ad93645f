#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A real's service: answers every TCP request and UDP datagram with the
real's name, so the client learns which real served its flow.

Runs inside a real's network namespace (started by lab.py). TCP listens on the
wildcard (dual-stack), because a TCP reply always leaves from the address the
SYN was sent to. UDP binds each VIP explicitly: an unconnected socket on the
wildcard would answer from the real's own address (the route's preferred
source), and the client's connected socket would drop that reply. Binding the
VIP keeps the reply's source equal to the VIP, as DSR requires.

Prints "ready" once every socket is bound, then serves until SIGTERM.
"""
import argparse
import select
import signal
import socket
import sys
import time

IDLE_S = 60.0


def make_tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(256)
    s.setblocking(False)
    return s


def make_udp(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--tcp-port", type=int, action="append", default=[])
    ap.add_argument("--udp-port", type=int, action="append", default=[])
    ap.add_argument("--udp-addr", action="append", default=[],
                    help="address to bind UDP on (each VIP)")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    reply = (args.name + "\n").encode()
    listeners = [make_tcp(p) for p in args.tcp_port]
    udps = [make_udp(a, p) for a in args.udp_addr for p in args.udp_port]
    # Open connections and the time each is dropped if it stays silent.
    pending = {}
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select(listeners + udps + list(pending), [], [], 1.0)
        for s in readable:
            if s in listeners:
                try:
                    conn, _ = s.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                pending[conn] = time.monotonic() + IDLE_S
            elif s in udps:
                try:
                    _, peer = s.recvfrom(2048)
                    s.sendto(reply, peer)
                except OSError:
                    pass
            else:
                # Every request on a connection gets the name again, so a
                # test can hold a connection across a ring change and see
                # which real still serves it. EOF or an error closes it.
                try:
                    data = s.recv(2048)
                    if data:
                        s.sendall(reply)
                except OSError:
                    data = b""
                if data:
                    pending[s] = time.monotonic() + IDLE_S
                else:
                    pending.pop(s, None)
                    s.close()
        # Drop connections idle for IDLE_S so a broken client cannot pin
        # descriptors forever.
        now = time.monotonic()
        for conn, deadline in list(pending.items()):
            if now > deadline:
                pending.pop(conn)
                conn.close()


if __name__ == "__main__":
    main()
