# SPDX-License-Identifier: Apache-2.0
"""node.next_hop_mac against the router the kernel routes the ipip reals
through (review finding F9), live: a gateway namespace on the lab's LAN is
the balancer's route to a prefix of ipip reals (IPv4 and IPv6). keeld
  - says next_hop_mac matches that router while it does;
  - warns (`next_hop_mac_mismatch`, naming the gateway, its new MAC, the
    configured one and the interface) once the router's MAC changes under
    it (`ip link set address`; the router announces it, as Linux does with
    arp_notify / ndisc_notify), and keel_next_hop_mac_mismatch goes 1 per
    family;
  - says it matches again, and the gauge goes 0, after a reload that sets
    next_hop_mac to the router's new MAC.
The reals behind the router do not exist: nothing here needs traffic to
reach them (the services have no health checks, so they stay up). Every
wait is bounded in time."""
import re
import time

import pytest

import lab as labmod

URL = "http://127.0.0.1:9477/metrics"
GW4, GW6 = "10.201.2.250", "fd00:201:2::250"
GW_MAC, GW_NEW_MAC = "02:6b:00:02:00:fa", "02:6b:00:02:00:fb"
FAR4, FAR6 = "10.201.60.0/24", "fd00:201:60::/64"
REALS4, REALS6 = ["10.201.60.11", "10.201.60.12"], ["fd00:201:60::11"]
WAIT_S = 20  # keeld's 5 s upkeep, twice, on a loaded box


@pytest.fixture
def gateway(lab):
    """A router on the lab's LAN (its own namespace and bridge port, named
    for this lab) that the balancer routes FAR4/FAR6 through; removed with
    its routes afterwards."""
    gw = labmod.Host("gateway", f"{lab.prefix}-nhgw", "eth0", GW4, GW6, GW_MAC)
    port = "p-nhgw"
    labmod.run(["ip", "netns", "add", gw.ns])
    try:
        labmod.run(["ip", "link", "add", "eth0", "netns", gw.ns, "address", GW_MAC, "type", "veth",
                    "peer", "name", port, "netns", lab.switch.ns])
        lab.switch.sh(f"""
            ethtool -K {port} tx off >/dev/null
            sysctl -qw net.ipv6.conf.{port}.disable_ipv6=1
            ip link set {port} master br0 up
        """)
        # arp_notify / ndisc_notify: a new MAC is announced (gratuitous ARP,
        # unsolicited NA), as a replaced router's first packets or VRRP do,
        # so the balancer's entry follows it.
        gw.sh(f"""
            ip link set lo up
            sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.eth0.accept_dad=0
            sysctl -qw net.ipv4.conf.eth0.arp_notify=1 net.ipv6.conf.eth0.ndisc_notify=1
            ip link set eth0 up
            ip addr add {GW4}/24 dev eth0
            ip addr add {GW6}/64 dev eth0 nodad
        """)
        lab.balancer.sh(f"""
            ip route add {FAR4} via {GW4} dev {lab.balancer.ifname}
            ip -6 route add {FAR6} via {GW6} dev {lab.balancer.ifname}
        """)
        yield gw
    finally:
        lab.balancer.sh(f"""
            ip route del {FAR4} || true
            ip -6 route del {FAR6} || true
        """, check=False)
        labmod.run(["ip", "netns", "del", gw.ns], check=False)


def services(lab):
    def svc(name, family, reals):
        s = lab.service(name, family, 80, "tcp", "ipip")
        s["reals"] = [{"address": a, "weight": 100} for a in reals]
        return s
    return [svc("far4", 4, REALS4), svc("far6", 6, REALS6)]


def mismatch_gauges(lab) -> dict:
    text = lab.balancer.run(["curl", "-sS", "--fail", "--max-time", "10", URL], timeout=15).stdout
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^keel_next_hop_mac_mismatch\{family="(\w+)"\} (\S+)$', text, re.M)}


def wait_lines(k, event: str, families=("ipv4", "ipv6"), after: int = 0) -> dict:
    """Waits, bounded, until keeld has logged EVENT for each of FAMILIES
    past offset AFTER of its log; returns the first line of each."""
    deadline = time.monotonic() + WAIT_S
    found = {}
    while time.monotonic() < deadline:
        found = {}
        for line in k.full_log()[after:].splitlines():
            m = re.search(r"\bfamily=(\w+)", line)
            if f"event={event} " in line and m and m.group(1) in families:
                found.setdefault(m.group(1), line)
        if len(found) == len(families):
            return found
        if k.proc.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"keeld did not log {event} for {families} within {WAIT_S}s (got {sorted(found)}):\n{k.log()}")


def test_a_routers_new_mac_is_warned_about_until_next_hop_mac_follows(lab, need_keel, gateway):
    config = lab.keel_config(services(lab), node={"next_hop_mac": GW_MAC})
    # Upkeeps every second, so the mismatch below outlives several of them
    # before the reload: a warning repeated at each upkeep would be counted.
    config["dataplane"]["upkeep_interval"] = "1s"
    with lab.keeld(config, name="nexthop") as k:
        # keeld nudges the router into the balancer's neighbour table if it
        # is not there, and compares at the next upkeep.
        wait_lines(k, "next_hop_mac_matches")
        assert mismatch_gauges(lab) == {"ipv4": 0, "ipv6": 0}

        mark = len(k.full_log())
        gateway.run(["ip", "link", "set", "dev", "eth0", "address", GW_NEW_MAC])
        warned = wait_lines(k, "next_hop_mac_mismatch", after=mark)
        for fam, gw in (("ipv4", GW4), ("ipv6", GW6)):
            line = warned[fam]
            assert "level=warning" in line, line
            assert (f"gateway={gw} neighbour_mac={GW_NEW_MAC} next_hop_mac={GW_MAC} "
                    f"interface={lab.balancer.ifname} ") in line, line
        assert mismatch_gauges(lab) == {"ipv4": 1, "ipv6": 1}
        time.sleep(3)  # set-up, not a measurement: about three upkeeps see the same mismatch

        mark = len(k.full_log())
        followed = lab.keel_config(services(lab), node={"next_hop_mac": GW_NEW_MAC})
        followed["dataplane"]["upkeep_interval"] = "1s"
        k.reload(followed)
        matched = wait_lines(k, "next_hop_mac_matches", after=mark)
        assert f"next_hop_mac={GW_NEW_MAC}" in matched["ipv4"], matched
        assert mismatch_gauges(lab) == {"ipv4": 0, "ipv6": 0}
        log = k.full_log()
        assert log.count("event=next_hop_mac_mismatch") == 2, log  # once per family, not every upkeep
        assert "event=next_hop_mac_unchecked" not in log, log
