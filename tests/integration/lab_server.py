#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A real's service: answers every TCP request and UDP datagram with the
real's name, so the client learns which real served its flow. A TCP request
that is HTTP/1.x (a request line "METHOD TARGET HTTP/1.x") gets an HTTP
response instead, whose body is the name: keep-alive unless the request asks
to close, so a client can hold one connection across ring changes, and any
path answers 200 (so it is also a health-check target).

Runs inside a real's network namespace (started by lab.py). TCP listens on the
wildcard (dual-stack), because a TCP reply always leaves from the address the
SYN was sent to. UDP binds each VIP explicitly: an unconnected socket on the
wildcard would answer from the real's own address (the route's preferred
source), and the client's connected socket would drop that reply. Binding the
VIP keeps the reply's source equal to the VIP, as DSR requires.

Prints "ready" once every socket is bound, then serves until SIGTERM, or
for --max-seconds at most (a lab whose pytest was killed leaves no server
running for ever; the next lab also sweeps dead labs' processes).
"""
import argparse
import re
import select
import signal
import socket
import sys
import time

IDLE_S = 60.0
MAX_REQUEST = 8192
REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.([01])\r?$")


def http_reply(name: bytes, buf: bytes):
    """(response bytes, rest of buf, close?) for the first complete request
    in buf, or None if it is not complete yet."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head, rest = buf[:end], buf[end + 4:]
    lines = head.split(b"\r\n")
    m = REQUEST_LINE.match(lines[0])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip().lower()
    conn = headers.get(b"connection", b"")
    close = conn == b"close" or (m and m.group(3) == b"0" and conn != b"keep-alive")
    body = name + b"\n"
    out = [b"HTTP/1.1 200 OK", b"Content-Type: text/plain",
           b"Content-Length: %d" % len(body), b"X-Keel-Real: " + name]
    if close:
        out.append(b"Connection: close")
    response = b"\r\n".join(out) + b"\r\n\r\n"
    if m and m.group(1) != b"HEAD":
        response += body
    return response, rest, close


def looks_http(buf: bytes) -> bool | None:
    """True/False once the first line tells; None while it may still be one."""
    line, nl, _ = buf.partition(b"\n")
    if not re.match(rb"^[A-Z]+ ", line[:16]) and not re.fullmatch(rb"[A-Z]+", line[:16]):
        return False
    if not nl:
        return None if len(buf) < MAX_REQUEST else False
    return REQUEST_LINE.match(line.rstrip(b"\n")) is not None


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
    ap.add_argument("--max-seconds", type=float, default=7200.0,
                    help="exit after this long even without SIGTERM (longer than any suite run)")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    name = args.name.encode()
    reply = name + b"\n"
    listeners = [make_tcp(p) for p in args.tcp_port]
    udps = [make_udp(a, p) for a in args.udp_addr for p in args.udp_port]
    # Open connections and the time each is dropped if it stays silent;
    # bytes of an HTTP request not yet complete, per connection.
    pending = {}
    partial = {}
    print("ready", flush=True)
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
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
                close = False
                try:
                    data = s.recv(2048)
                    if data:
                        close = serve(s, partial.pop(s, b"") + data, name, reply, partial)
                except OSError:
                    data = b""
                if data and not close:
                    pending[s] = time.monotonic() + IDLE_S
                else:
                    pending.pop(s, None)
                    partial.pop(s, None)
                    s.close()
        # Drop connections idle for IDLE_S so a broken client cannot pin
        # descriptors forever.
        now = time.monotonic()
        # (`drop_at`, not `deadline`: that name is the run's own bound, and
        # reusing it ended the server 60 s after its last connection.)
        for conn, drop_at in list(pending.items()):
            if now > drop_at:
                pending.pop(conn)
                partial.pop(conn, None)
                conn.close()


def serve(conn, buf, name, reply, partial) -> bool:
    """Answers what buf holds on conn; keeps an incomplete HTTP request in
    partial. True if the connection is to be closed."""
    kind = looks_http(buf)
    if kind is False:
        conn.sendall(reply)
        return False
    while kind:
        r = http_reply(name, buf)
        if r is None:
            if len(buf) >= MAX_REQUEST:
                return True
            partial[conn] = buf
            return False
        response, buf, close = r
        conn.sendall(response)
        if close:
            return True
        kind = looks_http(buf) if buf else False
    if kind is None:
        partial[conn] = buf
    return False


if __name__ == "__main__":
    main()
