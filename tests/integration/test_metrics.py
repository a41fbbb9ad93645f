# SPDX-License-Identifier: Apache-2.0
"""keeld's Prometheus endpoint, live: /metrics fetched with curl inside the
balancer namespace (keeld's default 127.0.0.1:9477) must
  - pass `promtool check metrics` (the exposition format and naming lint);
  - show real values: the packets of the reals that served flows rise by at
    least the packets the client sent them, the data plane's tx_ipip rises;
  - follow health: a real whose server is stopped goes keel_real_up 0, its
    failed checks and transitions are counted, the check histogram fills;
  - be absent with `metrics: {enabled: false}`;
  - (and keeld exits 0 on SIGTERM, on either plane);
  - stop keeld's start-up (detaching again) when its address cannot be
    bound, and stay where it is across a reload that changes it.
Every wait is bounded in time."""
import json
import re
import subprocess
import time

import pytest

from suite import checked_service, run_checked_keel, served

PORT = 80
URL = "http://127.0.0.1:9477/metrics"
STATE_WAIT_S = 15

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape_text(lab) -> str:
    p = lab.balancer.run(["curl", "-sS", "--fail", "--max-time", "10", URL], timeout=15)
    return p.stdout


def parse(text: str) -> dict:
    """{(name, frozenset(labels)): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparseable exposition line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples: dict, name: str, **labels) -> float:
    """The one sample of NAME whose labels include LABELS (fails if none or
    several match: a missing metric must fail the test)."""
    want = {(k, str(v)) for k, v in labels.items()}
    hits = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples match"
    return hits[0]


def wait_metric(lab, name, want, timeout=STATE_WAIT_S, **labels):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = value(parse(scrape_text(lab)), name, **labels)
        if got == want:
            return
        time.sleep(0.2)
    pytest.fail(f"{name}{labels} = {got}, wanted {want} within {timeout}s")


@pytest.fixture
def keel_metrics(request, lab, need_keel):
    yield from run_checked_keel(request, lab, lab.keel_config([checked_service(lab, port=PORT)]))


def test_promtool_accepts_exposition(keel_metrics):
    lab, _, _ = keel_metrics
    text = scrape_text(lab)
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, f"promtool check metrics:\n{p.stdout}{p.stderr}\n---\n{text[:3000]}"
    s = parse(text)
    assert value(s, "keel_build_info", dataplane=lab.dataplane) == 1
    assert value(s, "keel_scrape_success") == 1
    assert value(s, "keel_conntrack_capacity") > 0


def test_counters_follow_traffic(keel_metrics):
    lab, _, keeld = keel_metrics
    common = {"service": "web", "local_address": lab.vip4, "local_port": PORT, "proto": "TCP"}
    before = parse(scrape_text(lab))
    got = served(lab.flows("tcp", lab.vip4, PORT, count=30))
    after = parse(scrape_text(lab))
    for real in lab.reals:
        labels = dict(common, remote_address=real.v4, remote_port=PORT)
        delta = value(after, "keel_real_packets_total", **labels) - \
            value(before, "keel_real_packets_total", **labels)
        # Each flow sends at least SYN, the request and the final ACK to
        # the real through the balancer.
        assert delta >= 3 * got.get(real.role, 0), (real.role, delta, got)
        if got.get(real.role):
            assert value(after, "keel_real_bytes_total", **labels) > \
                value(before, "keel_real_bytes_total", **labels)
    svc_delta = value(after, "keel_service_packets_total", **common) - \
        value(before, "keel_service_packets_total", **common)
    assert svc_delta >= 3 * 30
    tx = value(after, "keel_dataplane_packets_total", reason="tx_ipip") - \
        value(before, "keel_dataplane_packets_total", reason="tx_ipip")
    assert tx >= svc_delta
    assert value(after, "keel_service_ring_slots", **common) == 65537
    # Every flow above holds a connection-table entry: the XDP plane counts
    # its map's elements, the DPDK plane its workers' occupied ways.
    entries = [v for (n, _), v in after.items() if n == "keel_conntrack_entries"]
    assert entries and entries[0] >= 30, entries
    # stats.get shows the same table by family: on DPDK each worker's
    # halves (the flows above are IPv4, in the ipv4 halves) and their sums;
    # on XDP, which has no halves, null (never zeros) and no workers.
    stats = json.loads(keeld.keelctl("-o", "json", "stats").stdout)
    ct = stats["conntrack"]
    if lab.dataplane == "dpdk":
        assert stats["workers"], stats
        assert ct["ipv4"]["entries"] >= 30, ct
        assert ct["ipv4"]["entries"] == sum(w["conntrack"]["ipv4"]["entries"] for w in stats["workers"]), stats
        assert ct["ipv4"]["capacity"] + ct["ipv6"]["capacity"] == ct["capacity"], ct
        assert all(set(w["icmp_peer_lookups"]) == {"found", "not_found", "rate_limited"}
                   for w in stats["workers"]), stats["workers"]
        # The port as its driver (net_af_packet) counts it: at least every
        # packet forwarded above came in through it and went out again.
        port = stats["port"]
        assert port["rx_packets"] >= svc_delta and port["tx_packets"] >= tx, port
        assert value(after, "keel_dpdk_port_packets_total", direction="rx") >= svc_delta
        assert all(set(w["tx_dropped"]) == {"port", "to_kernel", "from_kernel"} for w in stats["workers"]), stats
    else:
        assert stats["workers"] == [] and ct["ipv4"] is None and ct["ipv6"] is None, stats
        assert stats["port"] is None, stats
        assert not any(n.startswith("keel_dpdk_port") for (n, _) in after), "DPDK port metrics on XDP"


@pytest.fixture
def keel_flow_counts(request, lab, need_keel):
    config = lab.keel_config([checked_service(lab, port=PORT)])
    config["metrics"] = {"flow_count_interval": "10s"}
    yield from run_checked_keel(request, lab, config)


def test_real_flows_count_the_table(keel_flow_counts):
    """keel_real_flows: a walk of the data plane's connection table every
    metrics.flow_count_interval counts each real's entries; the flows just
    served show up at the next walk, each on the real that answered it."""
    lab, _, keeld = keel_flow_counts
    common = {"service": "web", "local_address": lab.vip4, "local_port": PORT, "proto": "TCP"}
    got = served(lab.flows("tcp", lab.vip4, PORT, count=30))
    served_at = time.time()
    deadline = time.monotonic() + 30  # one 10 s interval and a margin
    s = {}
    started = None
    while time.monotonic() < deadline:
        s = parse(scrape_text(lab))
        began = [v for (n, _), v in s.items() if n == "keel_conntrack_flows_last_count_timestamp_seconds"]
        started = began[0] if began else None
        if started is not None and started > served_at:  # a walk that began after the flows
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no walk of the table began after the flows within 30 s (last began at {started}, "
                    f"flows served at {served_at})")
    for real in lab.reals:
        labels = dict(common, remote_address=real.v4, remote_port=PORT)
        kept = value(s, "keel_real_flows", state="kept", **labels)
        # Health checks from this host are flows through no balancer: only
        # the served ones are in the table, each on the real that answered.
        assert kept is not None and kept >= got.get(real.role, 0), (real.role, kept, got)
    assert value(s, "keel_conntrack_flows", state="kept") >= 30
    assert value(s, "keel_conntrack_flow_count_failures_total") == 0
    # keelctl service list shows the same count (a walk may have ended
    # between the scrape and the listing: then both come from that one).
    listed = json.loads(keeld.keelctl("-o", "json", "service", "list").stdout)
    web = next(v for v in listed["services"] if v["name"] == "web")
    assert web["flows_counted_at"] is not None, web
    for r in web["reals"]:
        assert r["flows"] is not None and r["flows"]["kept"] >= got.get(
            next(x.role for x in lab.reals if x.v4 == r["address"]), 0), (r, got)
    table = keeld.keelctl("service", "list").stdout
    assert "\nFlows: table entries kept per real, counted " in table, table
    text = scrape_text(lab)
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"promtool check metrics:\n{p.stdout}{p.stderr}"


def test_real_down_shows(keel_metrics):
    lab, _, _ = keel_metrics
    dead = lab.reals[0]
    before = parse(scrape_text(lab))
    lab.stop_server(dead)
    wait_metric(lab, "keel_real_up", 0, remote_address=dead.v4)
    after = parse(scrape_text(lab))
    assert value(after, "keel_health_checks_total", remote_address=dead.v4, result="fail") >= 2
    assert value(after, "keel_health_transitions_total", remote_address=dead.v4) > \
        value(before, "keel_health_transitions_total", remote_address=dead.v4)
    # The service's histogram holds every check of its reals that ran
    # (result="error" counts checks this host could not run: none here).
    assert value(after, "keel_health_checks_total", remote_address=dead.v4, result="error") == 0
    checks = sum(v for (n, ls), v in after.items()
                 if n == "keel_health_checks_total" and ("result", "error") not in ls)
    assert checks > 0
    assert value(after, "keel_health_check_duration_seconds_count", service="web") == checks
    for real in lab.reals[1:]:
        assert value(after, "keel_real_up", remote_address=real.v4) == 1
    lab.restart_server(dead)
    wait_metric(lab, "keel_real_up", 1, remote_address=dead.v4)


def test_disabled(lab, need_keel):
    """No traffic needed (so no keel-decap): keeld logs `ready` only after
    its metrics endpoint would be listening."""
    config = lab.keel_config([lab.service("web", 4, PORT, "tcp", "ipip")])
    config["metrics"] = {"enabled": False}
    with lab.keeld(config) as k:
        k.wait_logged("ready")
        p = lab.balancer.run(["curl", "-sS", "--max-time", "5", URL], check=False, timeout=15)
        assert p.returncode == 7, (p.returncode, p.stdout, p.stderr)  # 7: connection refused


def test_sigterm_stops_cleanly(lab, need_keel):
    """SIGTERM: keeld exits 0 after its `stopped` record, on either plane
    (the DPDK plane releases EAL last, after the workers and the port).
    Stopped once it is ready; no traffic needed, so no keel-decap."""
    config = lab.keel_config([lab.service("web", 4, PORT, "tcp", "ipip")])
    with lab.keeld(config) as k:
        k.wait_logged("ready")
        assert k.stop() == 0, k.log()
    assert "event=stopped" in k.log(), k.log()


def test_unbindable_address_stops_startup(lab, need_keel):
    """A metrics address keeld cannot bind (not local here) is refused by the
    start's config check, at its line, before any data plane is attached
    (it was a metrics_failed after the attach, before the check bound it
    too), and keeld --check-config says the same."""
    config = lab.keel_config([lab.service("web", 4, PORT, "tcp", "ipip")])
    config["metrics"] = {"address": "192.0.2.1:9477"}  # TEST-NET-1: on no interface
    k = lab.start_keeld(config, "badmetrics", wait=None)
    try:
        rc = k.proc.wait(timeout=30)
        log = k.log()
        attached = lab.plane.attached(lab)
    finally:
        k.stop()
        lab.plane.reset(lab)
    assert rc == 1, log
    assert "event=config_error" in log and \
        "metrics.address: cannot listen on 192.0.2.1: Cannot assign requested address" in log, log
    assert "event=start_rejected" in log, log
    assert not attached, "keeld exited but left the balancer attached"


def test_ipv6_address(lab, need_keel):
    """metrics.address in brackets: keeld listens on IPv6, and `[::]` takes
    IPv4 too (the lab's namespaces keep net.ipv6.bindv6only at 0). No
    traffic needed, so no keel-decap."""
    config = lab.keel_config([lab.service("web", 4, PORT, "tcp", "ipip")])
    config["metrics"] = {"address": "[::]:9477"}
    with lab.keeld(config) as k:
        k.wait_logged("ready")
        assert "[::]:9477" in k.log(), k.log()  # metrics_listening names it in brackets
        for url in ("http://[::1]:9477/metrics", URL):
            p = lab.balancer.run(["curl", "-sS", "--fail", "--globoff", "--max-time", "10", url], timeout=15)
            assert value(parse(p.stdout), "keel_scrape_success") == 1, url


def test_reload_keeps_running_endpoint(keel_metrics):
    """metrics: changes need a restart: a reload says so and the endpoint
    stays where it was."""
    lab, config, keeld = keel_metrics
    changed = dict(config, metrics={"address": "127.0.0.1:9478"})
    keeld.reload(changed)
    assert "reload_metrics_restart_needed" in keeld.log()
    assert value(parse(scrape_text(lab)), "keel_scrape_success") == 1


def test_flow_counts_by_default_and_a_reload_turns_them_off(keel_metrics):
    """With no flow_count_interval keeld counts the table's flows (the first
    walk at start, then every minute); a reload to 0s applies at once, takes
    the counts away and asks for no restart."""
    lab, config, keeld = keel_metrics
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        s = parse(scrape_text(lab))
        if any(n == "keel_conntrack_flows_last_count_timestamp_seconds" for (n, _) in s):
            break
        time.sleep(0.2)
    else:
        pytest.fail("no count of the table within 15 s of the start, with the default interval")
    assert value(s, "keel_conntrack_flow_count_failures_total") == 0
    assert any(n == "keel_real_flows" for (n, _) in s)
    keeld.reload(dict(config, metrics=dict(config.get("metrics", {}), flow_count_interval="0s")))
    log = keeld.log()
    assert "event=flow_count_interval_changed from=1m to=0s" in log, log[-2000:]
    assert "reload_metrics_restart_needed" not in log
    names = {n for (n, _) in parse(scrape_text(lab))}
    assert "keel_real_flows" not in names and "keel_conntrack_flows" not in names, sorted(names)
