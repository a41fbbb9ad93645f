# SPDX-License-Identifier: Apache-2.0
"""Live forwarding through keel: real TCP and UDP exchanges from a client, via
a router, through the balancer, to three reals that answer directly (DSR).

Each test starts its own keeld (fixture `keel`) inside the module's lab, with
one config that holds every service of one forwarding mode:
  port 80   tcp+udp, v4+v6, scheduler maglev
  port 8080 tcp+udp, v4+v6, scheduler maglev-src
and is parameterised by forwarding (ipip, l2dsr) x family (v4, v6) x data
plane (conftest: --dataplane).
"""
import errno
import json
import os
import select
import socket
import subprocess
import time

import pytest

from suite import run_keel, served

N_SPREAD = 60        # flows from distinct source ports, per spread test
N_PER_CLIENT = 8     # flows per client source address, maglev-src test
PORT, SRC_PORT = 80, 8080

FORWARDINGS = ["ipip", "l2dsr"]
FAMILIES = [pytest.param(4, id="v4"), pytest.param(6, id="v6")]


def services(lab, forwarding):
    out = []
    for fam in (4, 6):
        for proto in ("tcp", "udp"):
            out.append(lab.service(f"web{fam}-{proto}", fam, PORT, proto, forwarding, "maglev"))
            out.append(lab.service(f"sticky{fam}-{proto}", fam, SRC_PORT, proto, forwarding,
                                   "maglev-src"))
    return out


def find_service(config, family, port, proto):
    for svc in config["services"]:
        if svc["port"] == port and svc["protocol"] == proto and (":" in svc["vip"]) == (family == 6):
            return svc
    raise KeyError(f"no service v{family} {proto}/{port} in the test config")


@pytest.fixture(params=FORWARDINGS)
def forwarding(request):
    return request.param


@pytest.fixture
def keel(request, lab, need_keel, forwarding):
    """keeld with every service of one forwarding mode; yields (lab, config)."""
    yield from run_keel(request, lab, lab.keel_config(services(lab, forwarding)))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_exchange(keel, forwarding, family, proto):
    """One request, one answer naming a real, through the VIP."""
    lab, _ = keel
    flows = lab.flows(proto, lab.vip(family), PORT, count=1)
    assert "real" in flows[0], flows[0]
    assert flows[0]["real"] in {r.role for r in lab.reals}


def settled(read, quiet_s=0.5, timeout_s=10.0):
    """READ()'s value once it has not changed for QUIET_S, polled every
    0.1 s and bounded by TIMEOUT_S (a failure that says so, with the last
    value): counters compared exactly are read only after every packet in
    flight has been counted (a stray of an earlier test's connection
    included, before the traffic)."""
    deadline = time.monotonic() + timeout_s
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return value
    pytest.fail(f"counters still moving after {timeout_s} s (something else sends through the lab): {value}")


@pytest.mark.parametrize("family", FAMILIES)
def test_forwarding_path(keel, forwarding, family):
    """The packets took the configured path. The router's own counters tell
    the modes apart: with ipip each request crosses the router twice
    (client->balancer, then outer balancer->real), with l2dsr once (the
    balancer hands it straight to the real's MAC); each reply crosses once.
    The verdict counters (keelctl stats, every data plane) counted every
    request under this mode's tx reason and none under the other's.
    Count-based: N exchanges, each answered; the counters are read once
    they have settled, before and after (bounded waits), and compared
    exactly, however long the exchanges took."""
    lab, _ = keel
    n = 10

    def counters():
        reasons = lab.reasons()
        assert reasons is not None, "no keeld runs"
        drops = tuple(sorted((k, v) for k, v in reasons.items() if k.startswith("drop_")))
        return lab.router_forwarded()[family], reasons["tx_ipip"], reasons["tx_l2dsr"], drops

    before = settled(counters)
    flows = lab.flows("udp", lab.vip(family), PORT, count=n)
    served(flows)
    after = settled(counters)
    forwarded = after[0] - before[0]
    per_exchange = 3 if forwarding == "ipip" else 2
    assert forwarded == per_exchange * n, \
        f"router forwarded {forwarded} packets for {n} {forwarding} exchanges"
    delta = {"tx_ipip": after[1] - before[1], "tx_l2dsr": after[2] - before[2]}
    delta.update({k: v - dict(before[3]).get(k, 0) for k, v in after[3]})
    this, other = ("tx_ipip", "tx_l2dsr") if forwarding == "ipip" else ("tx_l2dsr", "tx_ipip")
    assert delta[this] == n, f"{this} counted {delta[this]} for {n} requests: {delta}"
    assert delta[other] == 0, f"{other} counted {delta[other]}: {delta}"
    drops = {k: v for k, v in delta.items() if k.startswith("drop_") and v}
    assert not drops, f"drops while serving: {drops}"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_spread_matches_model(keel, forwarding, family, proto):
    """N flows from distinct source ports reach every real, and each flow
    lands on the real the reference model predicts. Where the data plane has
    workers of its own (DPDK: one per port queue, the vdev's PACKET_FANOUT
    hash standing in for a NIC's RSS), the flows were spread over all of them:
    every worker received some, and each flow still kept its model's real."""
    lab, config = keel
    dpdk = lab.dataplane == "dpdk"
    workers_before = lab.worker_packets() if dpdk else None
    flows = lab.flows(proto, lab.vip(family), PORT, count=N_SPREAD)
    spread = served(flows)
    print(f"{forwarding} v{family} {proto}: {dict(sorted(spread.items()))}")
    if dpdk:
        workers_after = lab.worker_packets()
        assert workers_before and workers_after, "the DPDK plane reported no workers"
        assert len(workers_after) == len(lab.plane.workers), workers_after
        per_worker = {w: n - workers_before.get(w, 0) for w, n in workers_after.items()}
        print(f"  rx packets per worker: {per_worker}")
        idle = [w for w, n in per_worker.items() if n <= 0]
        assert not idle, f"{N_SPREAD} flows, yet workers {idle} received nothing: {per_worker}"
    assert set(spread) == {r.role for r in lab.reals}, f"not every real served: {spread}"
    svc = find_service(config, family, PORT, proto)
    predicted = lab.model_pick(svc, flows)
    wrong = [(f["src"], f["sport"], f["real"], p) for f, p in zip(flows, predicted)
             if f["real"] != p]
    assert not wrong, f"{len(wrong)}/{len(flows)} flows differ from the model " \
                      f"(src, sport, served, predicted): {wrong[:5]}"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_maglev_src_sticks(keel, forwarding, family, proto):
    """maglev-src hashes the client address only: every flow of one client
    goes to one real, whatever its source port; and that real is the model's."""
    lab, config = keel
    svc = find_service(config, family, SRC_PORT, proto)
    sources = lab.client_sources(family)
    flows = lab.flows(proto, lab.vip(family), SRC_PORT, count=N_PER_CLIENT, src=sources)
    served(flows)
    predicted = lab.model_pick(svc, flows)
    chosen = {}
    for src in sources:
        mine = [i for i, f in enumerate(flows) if f["src"] == src]
        assert len(mine) == N_PER_CLIENT, f"client {src}: {len(mine)} flows"
        assert len({flows[i]["sport"] for i in mine}) > 1
        reals = {flows[i]["real"] for i in mine}
        assert len(reals) == 1, f"client {src} spread over {reals}"
        chosen[src] = reals.pop()
        model = {predicted[i] for i in mine}
        assert model == {chosen[src]}, f"client {src}: served {chosen[src]}, model {model}"
    print(f"{forwarding} v{family} {proto} maglev-src: {chosen}")


@pytest.mark.parametrize("family", FAMILIES)
def test_icmp_and_not_ours(keel, forwarding, family):
    """An echo request to a VIP is answered by the balancer itself (neither
    the reals nor the balancer's kernel own the VIP there). Traffic to the
    balancer's own address is not ours: XDP_PASS hands it to the kernel,
    which answers. A VIP port without a service is passed too (and, as the
    balancer's kernel does not own the VIP, goes unanswered)."""
    lab, _ = keel
    vip = lab.vip(family)
    assert lab.ping(lab.client, vip, count=3), f"no echo reply from the VIP {vip}"
    addr = lab.balancer.v4 if family == 4 else lab.balancer.v6
    assert lab.ping(lab.client, addr, count=3), f"no echo reply from the balancer at {addr}"
    before = lab.reasons()
    flows = lab.flows("udp", vip, 9999, count=3, timeout=0.5)
    assert all("real" not in f for f in flows), f"a real answered on a port without service: {flows}"
    after = lab.reasons()
    assert before is not None and after is not None, "no keeld runs"
    assert after["pass_no_service"] - before["pass_no_service"] >= 3, \
        f"pass_no_service {before['pass_no_service']} -> {after['pass_no_service']}"


@pytest.mark.parametrize("family", FAMILIES)
def test_the_balancers_own_traffic_to_a_vip_is_forwarded_once(keel, forwarding, family):
    """Datagrams the balancer host itself sends to a VIP leave by its default
    route, and the router sends them back to the balancer like any client's:
    keel forwards each once, and the real's answer reaches the host. (A
    net_af_packet port also reads what its interface sends; until its
    workers ignored frames with the port's own source MAC they balanced the
    outgoing copy too, and each datagram reached its real twice.)"""
    lab, _ = keel
    n = 6

    def sent():
        reasons = lab.reasons()
        assert reasons is not None, "no keeld runs"
        return reasons["tx_ipip"] + reasons["tx_l2dsr"]

    def ignored():  # DPDK: the host's frames its workers read and ignored
        workers = (lab.stats() or {}).get("workers") or []
        return sum(int(w.get("host_frames_ignored", 0)) for w in workers)

    before, ignored_before = settled(sent), ignored()
    flows = lab.flows("udp", lab.vip(family), PORT, count=n, host=lab.balancer)
    served(flows)
    forwarded = settled(sent) - before
    assert forwarded == n, f"{forwarded} packets forwarded for {n} datagrams the balancer sent"
    if lab.plane.kind == "dpdk":
        # af_packet read each datagram on its way out too (and ignored it).
        assert ignored() - ignored_before >= n, (ignored_before, ignored())


def test_af_packet_port_warned_where_the_kernel_would_route_vips(lab, need_keel):
    """A net_af_packet port leaves the kernel its copy of every frame; a
    kernel that forwards, with a route for a VIP, would route each VIP
    packet back through the router to keel again (many copies to the
    reals). keeld says so (a host check's warning: --check-config here, as a
    reload and the start), naming the sysctl; a blackhole route for the VIP
    (docs/operations.md) or no forwarding is no loop."""
    if lab.plane.kind != "dpdk":
        pytest.skip("an af_packet port is the DPDK plane's")
    config = lab.write_config(lab.keel_config(services(lab, "ipip")), "forwarding.yaml")
    sysctl = f"net.ipv4.conf.{lab.balancer.ifname}.forwarding"
    check = [str(lab.binary("keeld")), "--check-config", str(config)]
    warned = "the kernel forwards IPv4 packets received on"

    def checked():
        p = lab.balancer.run(check, check=False, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr  # a warning, never a refusal
        return p.stdout + p.stderr

    assert warned not in checked()
    lab.balancer.run(["sysctl", "-qw", f"{sysctl}=1"])
    try:
        out = checked()
        assert f"{warned} \"{lab.balancer.ifname}\" ({sysctl} = 1) and has a route for VIP {lab.vip4}" \
            in out, out
        lab.balancer.run(["ip", "route", "add", "blackhole", f"{lab.vip4}/32"])
        try:
            assert warned not in checked(), "a blackholed VIP is no loop"
        finally:
            lab.balancer.run(["ip", "route", "del", "blackhole", f"{lab.vip4}/32"])
    finally:
        lab.balancer.run(["sysctl", "-qw", f"{sysctl}=0"])


@pytest.fixture
def keel_variant(request, lab, need_keel):
    """keeld with the services the test passes via indirect parametrization
    (a function lab -> list of services)."""
    yield from run_keel(request, lab, lab.keel_config(request.param(lab)))


def l2dsr_without_macs(lab):
    return [lab.service(f"web{fam}", fam, PORT, "tcp", "l2dsr", with_mac=False) for fam in (4, 6)]


@pytest.mark.parametrize("keel_variant", [l2dsr_without_macs], indirect=True, ids=["no-macs"])
def test_l2dsr_resolves_real_macs(keel_variant):
    """l2dsr reals listed without a MAC: keeld resolves them (neighbours) and
    every real is reached, in both families."""
    lab, config = keel_variant
    for fam in (4, 6):
        spread = served(lab.flows("tcp", lab.vip(fam), PORT, count=30))
        assert set(spread) == {r.role for r in lab.reals}, f"v{fam}: {spread}"


# A real address no lab host holds when keeld starts: not in the balancer's
# neighbour table, so keeld holds it down; real3 takes it on later.
LATE_REAL_HOST = 99


def l2dsr_with_a_late_real(lab):
    svc = lab.service("web4", 4, PORT, "tcp", "l2dsr", with_mac=False)
    svc["reals"][-1]["address"] = lab.late_real_v4 = lab.reals[-1].v4.rsplit(".", 1)[0] + f".{LATE_REAL_HOST}"
    return [svc]


@pytest.fixture
def late_real(request, lab, need_keel):
    """keeld with an l2dsr service whose last real is an address nobody holds
    yet; removes that address from real3 and the balancer's neighbour table
    afterwards."""
    try:
        yield from run_keel(request, lab, lab.keel_config(l2dsr_with_a_late_real(lab)), with_handle=True)
    finally:
        late = getattr(lab, "late_real_v4", None)
        if late:
            lab.reals[-1].run(["ip", "addr", "del", f"{late}/24", "dev", "eth0"], check=False)
            lab.balancer.run(["ip", "neigh", "del", late, "dev", "eth0"], check=False)


def real_health(keeld, address):
    out = json.loads(keeld.keelctl("-o", "json", "health", "show", "web4").stdout)
    for r in out["services"][0]["reals"]:
        if r["address"] == address:
            return r
    raise KeyError(f"no real {address} in {out}")


def test_l2dsr_real_that_appears_later(late_real):
    """An l2dsr real without a MAC that is not in the neighbour table does not
    stop keeld: it starts with that real down (the table's words as the
    reason) and the others serving; once the address answers ARP (real3
    takes it), keeld's retry finds its MAC and the real serves."""
    lab, config, k = late_real
    late = lab.late_real_v4
    h = real_health(k, late)
    assert h["state"] == "down" and h["reason"] == f"l2dsr: {late} not in the neighbour table of eth0", h
    spread = served(lab.flows("tcp", lab.vip(4), PORT, count=30))
    assert set(spread) == {r.role for r in lab.reals[:-1]}, spread

    lab.reals[-1].run(["ip", "addr", "add", f"{late}/24", "dev", "eth0"])
    deadline = time.monotonic() + 15  # retries every 2 s, each nudging ARP
    while real_health(k, late)["state"] != "up" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert real_health(k, late)["state"] == "up", f"{real_health(k, late)}\n{k.log()}"
    assert "real_mac_resolved" in k.log()
    spread = served(lab.flows("tcp", lab.vip(4), PORT, count=30))
    assert set(spread) == {r.role for r in lab.reals}, spread


def l2dsr4_without_macs(lab):
    return [lab.service("web4", 4, PORT, "tcp", "l2dsr", with_mac=False)]


@pytest.fixture
def moved_real(request, lab, need_keel):
    """keeld with an l2dsr service whose MACs come from the neighbour table;
    gives real2 its own MAC back, in its namespace and in the balancer's
    table, afterwards."""
    real = lab.reals[1]
    try:
        yield from run_keel(request, lab, lab.keel_config(l2dsr4_without_macs(lab)), with_handle=True)
    finally:
        real.run(["ip", "link", "set", "eth0", "address", real.mac], check=False)
        # Every host that talked to real2 meanwhile (the router, whose entry
        # carries the ipip services' traffic to it) learned the new MAC:
        # forgotten, so the next packet resolves the real one again.
        for host in [lab.client, lab.router, lab.balancer] + [r for r in lab.reals if r is not real]:
            host.run(["ip", "neigh", "flush", "to", real.v4], check=False)
            host.run(["ip", "-6", "neigh", "flush", "to", real.v6], check=False)
        lab.balancer.run(["ip", "neigh", "replace", real.v4, "lladdr", real.mac, "dev", "eth0", "nud", "reachable"],
                         check=False)


def test_l2dsr_real_follows_a_new_mac(moved_real):
    """An l2dsr real whose MAC changes (a NIC swapped, a VM moved): once the
    balancer's neighbour table has the new MAC, keeld sends the real's flows
    there (real_mac_changed) and every real serves again; until then its
    flows went to the old MAC, which nothing answers."""
    lab, config, k = moved_real
    real = lab.reals[1]
    new_mac = "02:6b:00:02:00:99"
    real.run(["ip", "link", "set", "eth0", "address", new_mac])
    # The table learns it as the kernel would after its next probe; set
    # here so the test does not wait for the kernel's timers.
    lab.balancer.run(["ip", "neigh", "replace", real.v4, "lladdr", new_mac, "dev", "eth0", "nud", "reachable"])
    deadline = time.monotonic() + 10  # keeld reads the table every 2 s
    while "real_mac_changed" not in k.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "real_mac_changed" in k.log(), k.log()
    shown = json.loads(k.keelctl("-o", "json", "service", "show", "web4").stdout)
    shown = shown.get("service", shown)
    macs = {r["address"]: r.get("mac") for r in shown["reals"]}
    assert macs[real.v4] == new_mac, macs
    spread = served(lab.flows("tcp", lab.vip(4), PORT, count=30))
    assert set(spread) == {r.role for r in lab.reals}, spread


@pytest.fixture
def moved_balancer(request, lab, need_keel):
    """keeld (XDP) with an l2dsr service; gives the balancer its own MAC back
    afterwards, and has every host that learned the new one forget it. Its
    upkeep timer is set to an hour: only the interface's link message can
    make it see a new MAC in the test's time."""
    if lab.dataplane != "xdp":
        pytest.skip("a DPDK port sends from its own MAC, not its kernel interface's")
    config = lab.keel_config(l2dsr4_without_macs(lab))
    config["dataplane"]["upkeep_interval"] = "1h"
    try:
        yield from run_keel(request, lab, config, with_handle=True)
    finally:
        lab.balancer.run(["ip", "link", "set", "eth0", "address", lab.balancer.mac], check=False)
        for host in [lab.client, lab.router, *lab.reals]:
            host.run(["ip", "neigh", "flush", "to", lab.balancer.v4], check=False)
            host.run(["ip", "-6", "neigh", "flush", "to", lab.balancer.v6], check=False)


def test_frames_leave_from_the_balancers_new_mac(moved_balancer):
    """The balancer's interface gets another MAC (a bond's failover, a NIC
    swapped): without node.local_mac keeld follows it (local_mac_changed)
    at the interface's link message, so forwarded frames do not keep
    leaving from a MAC the host no longer owns, which port security drops
    (fault review F3: it was read once)."""
    lab, config, k = moved_balancer
    new_mac = "02:6b:00:02:00:98"
    lab.balancer.run(["ip", "link", "set", "eth0", "address", new_mac])
    deadline = time.monotonic() + 10  # at the link message (bounded wait)
    while "local_mac_changed" not in k.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "local_mac_changed" in k.log(), k.log()
    # What reaches a real from the balancer: a forwarded SYN (l2dsr).
    captures = {}
    for real in lab.reals:
        captures[real.role] = subprocess.Popen(
            real.argv(["timeout", "10", "tcpdump", "-i", "eth0", "-e", "-n", "-l", "-c", "1",
                       "tcp[tcpflags] & tcp-syn != 0 and dst port " + str(PORT)]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Each tcpdump's capture open: it says "listening on" (bounded: 5 s).
    for role, cap in captures.items():
        deadline, said = time.monotonic() + 5, ""
        while "listening on" not in said and time.monotonic() < deadline:
            if select.select([cap.stderr], [], [], max(0, deadline - time.monotonic()))[0]:
                got = os.read(cap.stderr.fileno(), 4096).decode(errors="replace")  # unbuffered
                if not got:
                    break
                said += got
        assert "listening on" in said, f"{role}: tcpdump did not start: {said}"
    spread = served(lab.flows("tcp", lab.vip(4), PORT, count=20))
    assert set(spread) == {r.role for r in lab.reals}, spread
    for role, cap in captures.items():
        out, err = cap.communicate(timeout=15)
        assert out.strip(), f"{role}: no forwarded SYN captured: {err}"
        assert out.split(" > ")[0].endswith(new_mac), f"{role}: {out}"


def weighted(lab):
    return [lab.service(f"web{fam}-{fwd}", fam, PORT if fwd == "ipip" else SRC_PORT, "udp", fwd,
                        weights=[100, 200, 300])
            for fam in (4, 6) for fwd in FORWARDINGS]


@pytest.mark.parametrize("keel_variant", [weighted], indirect=True, ids=["weights-1-2-3"])
def test_weighted_reals_match_model(keel_variant):
    """Unequal weights change the ring; keel still agrees with the model flow
    by flow, and a heavier real serves more (over 120 flows, 1:2:3)."""
    lab, config = keel_variant
    for svc in config["services"]:
        fam = 6 if ":" in svc["vip"] else 4
        flows = lab.flows("udp", svc["vip"], svc["port"], count=120)
        spread = served(flows)
        print(f"{svc['name']} weights 1:2:3 -> {dict(sorted(spread.items()))}")
        predicted = lab.model_pick(svc, flows)
        wrong = [(f["sport"], f["real"], p) for f, p in zip(flows, predicted) if f["real"] != p]
        assert not wrong, f"{svc['name']}: {len(wrong)} flows differ from the model: {wrong[:5]}"
        assert spread["real3"] > spread["real1"], f"v{fam} {svc['name']}: {spread}"


def ipip_all(lab):
    return [lab.service(f"web{fam}-{proto}", fam, PORT, proto, "ipip")
            for fam in (4, 6) for proto in ("udp", "tcp")]


# Linux socket options (not all in Python's socket module).
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14
IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, IPV6_MTU = 23, 2, 24


def flush_pmtu(lab):
    """Forgets every learned path MTU in the client (route exceptions), so
    each test starts from the link's 1500 and leaves nothing behind."""
    lab.client.sh("ip -4 route flush cache; ip -6 route flush cache")


@pytest.mark.parametrize("keel_variant", [ipip_all], indirect=True, ids=["ipip"])
@pytest.mark.parametrize("family", FAMILIES)
def test_too_big_answered_with_icmp(keel_variant, family):
    """PMTU discovery through the VIP (docs/operations.md "MTU with ipip"):
    on a 1500-byte LAN, a 1500-byte client packet with DF no longer fits once
    encapsulated. The balancer answers from the VIP with ICMP frag-needed /
    packet-too-big naming 1500 less the outer header, the client's stack
    learns it (the socket's path MTU drops, the next full-size send fails with
    EMSGSIZE), and a TCP upload of 200 KB completes at the smaller size
    instead of stalling in a black hole."""
    lab, _ = keel_variant
    vip = lab.vip(family)
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    hdr = 20 if family == 4 else 40  # outer header: the real's family (= the VIP's here)
    want = lab.lan_mtu - hdr
    level, disc, do, mtu_opt = ((socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU) if family == 4 else
                                (socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, IPV6_MTU))
    flush_pmtu(lab)
    before = lab.reasons()
    s = lab.client.socket(fam, socket.SOCK_DGRAM)
    try:
        s.setsockopt(level, disc, do)
        s.connect((vip, PORT))
        assert s.getsockopt(level, mtu_opt) == lab.lan_mtu, "a path MTU learned before the test"
        full = b"x" * (lab.lan_mtu - (20 if family == 4 else 40) - 8)  # a 1500-byte IP packet
        learned = lab.lan_mtu
        for _ in range(5):  # bounded: a send, then up to 1 s for the error to arrive
            s.send(full)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and learned == lab.lan_mtu:
                time.sleep(0.05)
                learned = s.getsockopt(level, mtu_opt)
            if learned != lab.lan_mtu:
                break
        assert learned == want, f"path MTU to {vip}: {learned}, want {want}"
        try:
            s.send(full)
            raise AssertionError("a full-size DF datagram was sent after the path MTU dropped")
        except OSError as e:
            assert e.errno == errno.EMSGSIZE, e
        route = lab.client.run(["ip", f"-{family}", "route", "get", vip]).stdout
        assert f"mtu {want}" in route, route
        after = lab.reasons()
        assert after["tx_icmp_too_big"] - before["tx_icmp_too_big"] >= 1, after
        assert after["drop_too_big"] == before["drop_too_big"], after

        # TCP (DF on every segment): the upload completes once the stack
        # lowers its segments; the real answers each read with its name and
        # closes at EOF, so reading to EOF proves every byte arrived.
        flush_pmtu(lab)
        t = lab.client.socket(fam, socket.SOCK_STREAM)
        try:
            t.settimeout(10)
            t.connect((vip, PORT))
            t.sendall(b"u" * 200_000)
            t.shutdown(socket.SHUT_WR)
            got, eof = b"", False
            deadline = time.monotonic() + 20  # bounded in time and bytes (the reply is a name per read)
            while time.monotonic() < deadline and len(got) < 1_000_000:
                chunk = t.recv(65536)
                if not chunk:
                    eof = True
                    break
                got += chunk
            assert eof, f"no EOF within the bound: {len(got)} bytes read"
            names = set(got.split())
            assert len(names) == 1 and names.pop().startswith(b"real"), got[:100]
            assert t.getsockopt(level, mtu_opt) == want
        finally:
            t.close()
    finally:
        s.close()
        flush_pmtu(lab)
