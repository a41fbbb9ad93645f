#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""keel-decap on the live path: two network namespaces joined by a veth pair.

  ns "bal" (sender)  veth 10.77.0.1 / fd77::1  ──  veth 10.77.0.2 / fd77::2  ns "real"
                                                   VIPs 10.100.77.1, fd00:177::1 on lo
                                                   keel-decap attached (native XDP)

The sender emits real IPIP (4in4), IP6IP6 (6in6) and 4in6 packets through raw
sockets (the kernel writes the outer header); a UDP listener bound to the VIP
in "real" must receive each inner datagram. There is no ipip/ip6_tunnel module
on this machine, so nothing reaches the listener unless keel-decap strips the
outer header. The CLI's attach / status / detach are exercised from separate
processes, as an operator would. status also runs without CAP_SYS_ADMIN (as
under keel-decap@.service) and must still read the --allow-source list,
through the prog and prog_rodata pins; a prog_rodata that is not the attached
program's is refused, and an attachment without those pins (an older
keel-decap's) is read by id when CAP_SYS_ADMIN allows. Attached without
options it decapsulates to any local address (the real's own 10.77.0.2 too)
and warns so; with --vip only to the VIPs, and status lists them.

usage: decap_live_test.py PATH/TO/keel-decap        (root; stdlib only)
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

PID = os.getpid()
NS_BAL = "kdl-bal-%d" % PID
NS_REAL = "kdl-real-%d" % PID
IF_BAL = "kdlb%d" % (PID % 1000000)
IF_REAL = "kdlr%d" % (PID % 1000000)
IF_OTHER = "kdlx0"  # a second keel-decap in NS_REAL, on a veth pair of its own
PIN_ROOT = "/sys/fs/bpf/keel-decap-test-%d" % PID
VIP4, VIP6 = "10.100.77.1", "fd00:177::1"
PORT = 5353
PINS = {"link", "stats", "prog", "prog_rodata"}  # what attach pins in PIN_ROOT/IFACE
# Run a command as root without CAP_SYS_ADMIN (bounding set, so an exec'd
# root process cannot regain it), as keel-decap@.service runs keel-decap.
NO_SYS_ADMIN = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--no-new-privs"]
CAP_SYS_ADMIN = 21


def nsexec(ns):
    # nsenter --net switches only the network namespace. `ip netns exec` also
    # enters a private mount namespace with a fresh /sys, where the pins of
    # keel-decap would vanish when it exits.
    return ["nsenter", "--net=/run/netns/" + ns]


def sh(*cmd, ns=None, check=True, capture=False):
    full = (nsexec(ns) if ns else []) + list(cmd)
    r = subprocess.run(full, check=False, text=True, capture_output=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(full), r.returncode, r.stderr.strip()))
    return r.stdout if capture else r.returncode


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4_udp(src, dst, sport, dport, payload):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # v4: checksum optional
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                      socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + udp


def ipv6_udp(src, dst, sport, dport, payload):
    s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    length = 8 + len(payload)
    pseudo = s6 + d6 + struct.pack("!IxxxB", length, 17)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return struct.pack("!IHBB", 6 << 28, length, 17, 64) + s6 + d6 + udp


SENDER = r'''
import socket, sys
family, proto, dst, pkt = sys.argv[1], int(sys.argv[2]), sys.argv[3], bytes.fromhex(sys.argv[4])
s = socket.socket(socket.AF_INET if family == "4" else socket.AF_INET6, socket.SOCK_RAW, proto)
s.sendto(pkt, (dst, 0))
'''

LISTENER = r'''
import socket, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    data, addr = s.recvfrom(2048)
    print("got", data.decode(), addr[0], flush=True)
except socket.timeout:
    print("timeout", flush=True)
'''


def exchange(family, outer_proto, outer_dst, inner, vip, wait):
    """Start a listener on vip in NS_REAL, send one tunnel packet from NS_BAL,
    return what the listener saw."""
    lst = subprocess.Popen(nsexec(NS_REAL) + ["/usr/bin/python3", "-c", LISTENER, vip, str(PORT),
                            str(wait)], stdout=subprocess.PIPE, text=True)
    try:
        assert lst.stdout.readline().strip() == "ready"
        sh("/usr/bin/python3", "-c", SENDER, family, str(outer_proto), outer_dst, inner.hex(), ns=NS_BAL)
        out, _ = lst.communicate(timeout=wait + 10)
    finally:
        if lst.poll() is None:
            lst.kill()
    return out.strip()


def setup():
    sh("ip", "netns", "add", NS_BAL)
    sh("ip", "netns", "add", NS_REAL)
    sh("ip", "link", "add", IF_BAL, "netns", NS_BAL, "type", "veth", "peer", "name", IF_REAL, "netns", NS_REAL)
    for ns, ifname, v4, v6 in ((NS_BAL, IF_BAL, "10.77.0.1/24", "fd77::1/64"),
                               (NS_REAL, IF_REAL, "10.77.0.2/24", "fd77::2/64")):
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "addr", "add", v4, "dev", ifname, ns=ns)
        sh("ip", "-6", "addr", "add", v6, "dev", ifname, "nodad", ns=ns)
        sh("ip", "link", "set", ifname, "up", ns=ns)
        sh("ethtool", "-K", ifname, "tx", "off", ns=ns, check=False)
    sh("ip", "link", "add", IF_OTHER, "type", "veth", "peer", "name", "kdlx1", ns=NS_REAL)
    for ifname in (IF_OTHER, "kdlx1"):
        sh("ip", "link", "set", ifname, "up", ns=NS_REAL)
    sh("ip", "addr", "add", VIP4 + "/32", "dev", "lo", ns=NS_REAL)
    sh("ip", "-6", "addr", "add", VIP6 + "/128", "dev", "lo", ns=NS_REAL)
    # Replies and rp_filter: the clients are reached through the balancer side.
    sh("ip", "route", "add", "default", "via", "10.77.0.1", ns=NS_REAL)
    sh("ip", "-6", "route", "add", "default", "via", "fd77::1", ns=NS_REAL)


def cleanup():
    if os.path.exists("/run/netns/" + NS_REAL):
        for ifname in (IF_REAL, IF_OTHER):
            sh(DECAP, "detach", ifname, "--pin-root", PIN_ROOT, ns=NS_REAL, check=False)
    for ns in (NS_BAL, NS_REAL):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    shutil.rmtree(PIN_ROOT, ignore_errors=True)


def remove_leftovers_of_dead_runs():
    """What a run that meson killed (SIGKILL half a second after SIGTERM,
    possibly mid-cleanup) left: its namespaces (their links, and the
    programs on them, go with them) and its pins, each named by its pid.
    Removed when that process is gone."""
    def dead(name, prefix):
        pid = name[len(prefix):]
        return name.startswith(prefix) and pid.isdigit() and not os.path.exists("/proc/" + pid)
    for ns in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if dead(ns, "kdl-bal-") or dead(ns, "kdl-real-"):
            # Its listeners outlive it in the namespace, keeping it alive.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                  timeout=30).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    for pins in os.listdir("/sys/fs/bpf") if os.path.isdir("/sys/fs/bpf") else []:
        if dead(pins, "keel-decap-test-"):
            shutil.rmtree("/sys/fs/bpf/" + pins, ignore_errors=True)


def status(ifname, privileged=True, json_out=False):
    """keel-decap status from a new process, as root with or without CAP_SYS_ADMIN."""
    cmd = ([] if privileged else NO_SYS_ADMIN) + [DECAP, "status", ifname, "--pin-root", PIN_ROOT]
    out = sh(*cmd, *(["-o", "json"] if json_out else []), ns=NS_REAL, capture=True)
    return json.loads(out) if json_out else out


def allow_of(st):
    return st.get("allow_source", st.get("allow_source_error"))


def attach(ifname, *opts):
    """keel-decap attach from a new process; its result (stderr: warnings)."""
    r = subprocess.run(nsexec(NS_REAL) + [DECAP, "attach", ifname, *opts, "--pin-root", PIN_ROOT],
                       check=False, text=True, capture_output=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("attach %s %s failed (%d): %s" % (ifname, " ".join(opts), r.returncode, r.stderr.strip()))
    return r


OPEN_WARNING = "decapsulates tunnel packets from any source to any local address"


def ip_received():
    """NS_REAL's Ip InReceives: IPv4 packets its kernel took in, whatever
    became of them (proc follows the caller's namespace)."""
    lines = [l.split() for l in sh("cat", "/proc/net/snmp", ns=NS_REAL, capture=True).splitlines()
             if l.startswith("Ip:")]
    return int(dict(zip(lines[0][1:], lines[1][1:]))["InReceives"])


def main():
    failures = []

    def expect(cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            failures.append(what)

    setup()
    inner4 = ipv4_udp("192.0.2.50", VIP4, 40000, PORT, b"hello-4in4")
    # Control: without keel-decap the kernel cannot deliver the inner packet.
    # It did arrive (the real's kernel took an IPv4 packet in), so the
    # timeout is not a packet never sent.
    received = ip_received()
    got = exchange("4", 4, "10.77.0.2", inner4, VIP4, 1.5)
    expect(got == "timeout", "without keel-decap the 4in4 datagram is not delivered (%s)" % got)
    now = ip_received()
    expect(now > received, "... though the tunnel packet reached the real's kernel (InReceives %d -> %d)"
           % (received, now))

    r = attach(IF_REAL)
    link = sh("ip", "-d", "link", "show", IF_REAL, ns=NS_REAL, capture=True)
    expect("prog/xdp" in link, "attach leaves a native XDP program on the interface after the CLI exits")
    expect(OPEN_WARNING in r.stderr and "--allow-source PREFIX" in r.stderr and "--vip PREFIX" in r.stderr,
           "attach without --allow-source or --vip warns what it accepts and what restricts it (%s)"
           % r.stderr.strip())
    expect("decapsulating tunnels from any source to any local address" in r.stdout,
           "... and says so on stdout (%s)" % r.stdout.strip())

    got = exchange("4", 4, "10.77.0.2", inner4, VIP4, 10)
    expect(got.startswith("got hello-4in4 192.0.2.50"), "4in4 delivered to the VIP listener (%s)" % got)
    inner6 = ipv6_udp("2001:db8::50", VIP6, 40001, PORT, b"hello-6in6")
    got = exchange("6", 41, "fd77::2", inner6, VIP6, 10)
    expect(got.startswith("got hello-6in6 2001:db8::50"), "6in6 delivered to the VIP listener (%s)" % got)
    inner4b = ipv4_udp("192.0.2.51", VIP4, 40002, PORT, b"hello-4in6")
    got = exchange("6", 4, "fd77::2", inner4b, VIP4, 10)
    expect(got.startswith("got hello-4in6 192.0.2.51"), "4in6 delivered to the VIP listener (%s)" % got)

    st = status(IF_REAL, json_out=True)
    c = st["counters"]
    expect(st["attached"] and c["decap_v4"]["packets"] >= 1 and c["decap_v6"]["packets"] >= 2,
           "status from a new process shows decap_v4 >= 1, decap_v6 >= 2 (%s)" % json.dumps(c))
    expect(st.get("allow_source") == [], "status -o json: attached without --allow-source, allow_source "
           "is [] (%s)" % allow_of(st))
    expect(st.get("vip") == [], "status -o json: attached without --vip, vip is [] (%s)" % st.get("vip"))
    text = status(IF_REAL)
    expect("decapsulating tunnels from any source\n" in text, "status says 'any source' (%s)" % text)
    expect("decapsulating tunnels to any local address\n" in text, "status says 'any local address' (%s)" % text)
    # The counter table's columns line up: every row as long as its header
    # (the longest reason names pushed their numbers right).
    table = text[text.index("reason "):].splitlines()
    table = [l for l in table if not l.startswith("warning:")]
    expect(len(table) > 10 and len({len(l) for l in table}) == 1,
           "status's counter rows all have the header's width (%s)" % text)
    # Open: a tunnel to the real's own LAN address (not a VIP) is delivered.
    mgmt4 = ipv4_udp("192.0.2.52", "10.77.0.2", 40003, PORT, b"hello-mgmt")
    got = exchange("4", 4, "10.77.0.2", mgmt4, "10.77.0.2", 10)
    expect(got.startswith("got hello-mgmt 192.0.2.52"),
           "without --vip a 4in4 to the real's own 10.77.0.2 is delivered, forged source and all (%s)" % got)
    real_dir = os.path.join(PIN_ROOT, IF_REAL)
    expect(set(os.listdir(real_dir)) == PINS, "attach pins %s (%s)" % (sorted(PINS), os.listdir(real_dir)))
    # The wrapper really takes CAP_SYS_ADMIN away.
    caps = sh(*NO_SYS_ADMIN, "cat", "/proc/self/status", capture=True)
    eff = int([l for l in caps.splitlines() if l.startswith("CapEff:")][0].split()[1], 16)
    expect(not eff & (1 << CAP_SYS_ADMIN), "setpriv %s leaves no CAP_SYS_ADMIN (CapEff %x)"
           % (" ".join(NO_SYS_ADMIN[1:]), eff))
    text = status(IF_REAL, privileged=False)
    expect("decapsulating tunnels from any source\n" in text, "without CAP_SYS_ADMIN too (%s)" % text)

    sh(DECAP, "detach", IF_REAL, "--pin-root", PIN_ROOT, ns=NS_REAL)
    link = sh("ip", "-d", "link", "show", IF_REAL, ns=NS_REAL, capture=True)
    expect("prog/xdp" not in link, "detach from a new process removes the program")
    expect(not os.path.exists(real_dir), "detach removes the pins, prog and prog_rodata too")
    expect(not os.path.exists(PIN_ROOT), "... and the pin root it left empty")

    # --vip: only the listed inner destinations are decapsulated; the real's
    # own address is not, though local. No warning: --vip restricts it.
    r = attach(IF_REAL, "--vip", VIP4, "--vip", "fd00:177::1234/64")
    expect(OPEN_WARNING not in r.stderr, "attach with --vip does not warn (%s)" % r.stderr.strip())
    vips = "decapsulating tunnels to VIPs 10.100.77.1/32, fd00:177::/64\n"
    expect("from any source to VIPs 10.100.77.1/32, fd00:177::/64" in r.stdout,
           "attach says which VIPs (%s)" % r.stdout.strip())
    got = exchange("4", 4, "10.77.0.2", inner4, VIP4, 10)
    expect(got.startswith("got hello-4in4 192.0.2.50"), "with --vip a 4in4 to the VIP is delivered (%s)" % got)
    got = exchange("6", 41, "fd77::2", inner6, VIP6, 10)
    expect(got.startswith("got hello-6in6 2001:db8::50"), "... and a 6in6 to the VIP in fd00:177::/64 (%s)" % got)
    got = exchange("4", 4, "10.77.0.2", mgmt4, "10.77.0.2", 1.5)
    expect(got == "timeout", "a 4in4 to the real's own 10.77.0.2, not a VIP, is not decapsulated (%s)" % got)
    st = status(IF_REAL, privileged=False, json_out=True)
    expect(st["counters"]["pass_not_vip"]["packets"] >= 1 and st["counters"]["decap_v4"]["packets"] >= 1,
           "status counts it as pass_not_vip (%s)" % json.dumps(st["counters"]))
    expect(st.get("vip") == ["10.100.77.1/32", "fd00:177::/64"] and st.get("allow_source") == [],
           "status -o json without CAP_SYS_ADMIN lists the loaded --vip prefixes (%s)" % st.get("vip"))
    text = status(IF_REAL, privileged=False)
    expect(vips in text, "status lists them in the words attach used (%s)" % text)
    # -o json on detach too: what it did, one object on stdout.
    out = sh(DECAP, "detach", IF_REAL, "--pin-root", PIN_ROOT, "-o", "json", ns=NS_REAL, capture=True)
    expect(json.loads(out) == {"interface": IF_REAL, "attached": False, "detached": True},
           "detach -o json says what it did (%s)" % out.strip())

    # Pins without a link (what an older keel-decap's detach leaves: it knew
    # only link and stats) belong to no attachment; attach replaces them.
    other = "192.0.2.0/24"
    sh(DECAP, "attach", IF_OTHER, "--allow-source", other, "--pin-root", PIN_ROOT, ns=NS_REAL)
    other_dir = os.path.join(PIN_ROOT, IF_OTHER)
    os.mkdir(real_dir, 0o700)
    for pin in ("prog", "prog_rodata"):
        os.rename(os.path.join(other_dir, pin), os.path.join(real_dir, pin))

    # --allow-source: a bad prefix is refused by name and attaches nothing;
    # tunnels from outside the prefixes are left alone, from inside decapsulated.
    r = subprocess.run(nsexec(NS_REAL) + [DECAP, "attach", IF_REAL, "--allow-source", "10.77.0.9/33",
                                          "--pin-root", PIN_ROOT],
                       check=False, text=True, capture_output=True, timeout=30)
    expect(r.returncode == 2 and "--allow-source: 10.77.0.9/33: the prefix length must be 0..32" in r.stderr,
           "a bad --allow-source is refused, naming it (%s)" % r.stderr.strip())
    link = sh("ip", "-d", "link", "show", IF_REAL, ns=NS_REAL, capture=True)
    expect("prog/xdp" not in link, "... and nothing is attached")
    # fd77::1234/64: the host bits are cleared when loaded, and status reads
    # back what the loaded program holds (its .rodata), so it says fd77::/64.
    r = attach(IF_REAL, "--allow-source", "10.77.0.9/32", "--allow-source", "fd77::1234/64", "-o", "json")
    expect(OPEN_WARNING not in r.stderr, "attach with --allow-source does not warn (%s)" % r.stderr.strip())
    expect(json.loads(r.stdout) == {"interface": IF_REAL, "attached": True, "mode": "native", "pin_dir": real_dir,
                                    "allow_source": ["10.77.0.9/32", "fd77::/64"], "vip": []},
           "attach -o json says what it attached, the lists as status has them (%s)" % r.stdout.strip())
    # A second attach is refused with the detach to run, its --pin-root
    # included (without it the hint looked in the default root and failed).
    r = subprocess.run(nsexec(NS_REAL) + [DECAP, "attach", IF_REAL, "--pin-root", PIN_ROOT],
                       check=False, text=True, capture_output=True, timeout=30)
    expect(r.returncode != 0 and
           "run 'keel-decap detach %s --pin-root %s' first" % (IF_REAL, PIN_ROOT) in r.stderr,
           "a second attach names the detach with its --pin-root (%s)" % r.stderr.strip())
    allowed = "decapsulating tunnels from sources 10.77.0.9/32, fd77::/64\n"
    text = status(IF_REAL)
    expect(allowed in text, "status from a new process lists the loaded --allow-source prefixes (%s)" % text)
    text = status(IF_REAL, privileged=False)
    expect(allowed in text, "... and without CAP_SYS_ADMIN, from the pins attach replaced (%s)" % text)
    st = status(IF_REAL, privileged=False, json_out=True)
    expect(st.get("allow_source") == ["10.77.0.9/32", "fd77::/64"],
           "status -o json without CAP_SYS_ADMIN lists them as allow_source (%s)" % allow_of(st))
    got = exchange("4", 4, "10.77.0.2", inner4, VIP4, 1.5)
    expect(got == "timeout", "a 4in4 from 10.77.0.1, outside --allow-source, is not decapsulated (%s)" % got)
    got = exchange("6", 41, "fd77::2", inner6, VIP6, 10)
    expect(got.startswith("got hello-6in6 2001:db8::50"),
           "a 6in6 from fd77::1, inside --allow-source fd77::/64, is (%s)" % got)
    st = status(IF_REAL, json_out=True)
    expect(st["counters"]["pass_source"]["packets"] >= 1,
           "status counts it as pass_source (%s)" % json.dumps(st["counters"]))
    expect(st.get("allow_source") == ["10.77.0.9/32", "fd77::/64"],
           "status -o json lists them as allow_source (%s)" % allow_of(st))

    # Another program's .rodata pinned as IF_REAL's is refused, never read
    # as its list; with CAP_SYS_ADMIN the list is read by id instead.
    sh(DECAP, "detach", IF_OTHER, "--pin-root", PIN_ROOT, ns=NS_REAL)
    expect(os.path.isdir(real_dir), "a detach keeps another interface's pin directory and the root")
    sh(DECAP, "attach", IF_OTHER, "--allow-source", other, "--pin-root", PIN_ROOT, ns=NS_REAL)
    os.rename(os.path.join(other_dir, "prog_rodata"), os.path.join(real_dir, "prog_rodata"))
    st = status(IF_REAL, privileged=False, json_out=True)
    err = st.get("allow_source_error", "")
    expect("allow_source" not in st and "prog_rodata" in err and "is not program %d's .rodata" % st["prog_id"]
           in err, "without CAP_SYS_ADMIN, a foreign prog_rodata is refused (%s)" % allow_of(st))
    st = status(IF_REAL, json_out=True)
    expect(st.get("allow_source") == ["10.77.0.9/32", "fd77::/64"],
           "with CAP_SYS_ADMIN, the list is read by id (%s)" % allow_of(st))
    # An attachment without prog and prog_rodata (an older keel-decap's):
    # read by id with CAP_SYS_ADMIN, else "unknown" saying why.
    for pin in ("prog", "prog_rodata"):
        os.unlink(os.path.join(real_dir, pin))
    text = status(IF_REAL, privileged=False)
    expect("decapsulating tunnels from: unknown (no %s/prog (attached by an older keel-decap?" % real_dir in text
           and "needs CAP_SYS_ADMIN" in text, "without the pins or CAP_SYS_ADMIN: unknown, and why (%s)" % text)
    text = status(IF_REAL)
    expect(allowed in text, "without the pins, with CAP_SYS_ADMIN: read by id (%s)" % text)
    for ifname in (IF_REAL, IF_OTHER):
        sh(DECAP, "detach", ifname, "--pin-root", PIN_ROOT, ns=NS_REAL)
    expect(not os.path.exists(PIN_ROOT), "detach removes every pin directory, then the empty root (%s)"
           % (os.listdir(PIN_ROOT) if os.path.isdir(PIN_ROOT) else "gone"))
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    DECAP = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        print("SKIP: needs root")
        sys.exit(77)
    # meson's timeout sends SIGTERM: exit through the finally below, so the
    # namespaces, links and pins go (a signal's default action skips it).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    remove_leftovers_of_dead_runs()
    rc = 1
    try:
        rc = main()
    finally:
        cleanup()
    sys.exit(rc)
