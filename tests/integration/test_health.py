# SPDX-License-Identifier: Apache-2.0
"""keeld's health checker and control socket, end to end (keelctl via nsenter):
  - a real whose server dies leaves the ring after `fall` failed checks and
    returns after `rise` passing ones once restarted, and `keelctl health
    show` says since when it is down and why (as keeld logged it);
  - `keelctl real drain --reason`: new flows avoid the real while a TCP
    connection already on it keeps working, and `health show` says since
    when and why it drains; undrain brings it back and clears that;
  - `keelctl config reload` of a broken file fails with file:line and
    changes nothing;
  - `keelctl service list` as a table and as JSON.
Checks are TCP connects to :8080 every 200ms, fall 2, rise 2. Every wait is
bounded in count and time."""
import json
import time
from datetime import datetime, timezone

import pytest

from suite import ask, checked_service, connect_and_ask, run_checked_keel, run_keel, served, show_service, wait_states
from suite import real_states as states

PORT = 80


@pytest.fixture
def keel_health(request, lab, need_keel):
    yield from run_checked_keel(request, lab, lab.keel_config([checked_service(lab, port=PORT)]))


def show(keeld) -> dict:
    return show_service(keeld, "web")


def names(flows):
    return served(flows)


def health_of(keeld, address) -> dict:
    out = json.loads(keeld.keelctl("-o", "json", "health", "show", "web").stdout)
    return next(r for r in out["services"][0]["reals"] if r["address"] == address)


def test_dead_real_leaves_and_returns(keel_health):
    lab, _, keeld = keel_health
    dead = lab.reals[0]
    assert names(lab.flows("tcp", lab.vip4, PORT, count=60))[dead.role] > 0
    killed = int(time.time())  # last_change has whole seconds
    lab.stop_server(dead)
    wait_states(keeld, {dead.v4: "down"})
    # health show says since when and why it is down: the failures that
    # crossed `fall`, in the words keeld logged (health_changed).
    h = health_of(keeld, dead.v4)
    changed = datetime.strptime(h["last_change"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert changed.timestamp() >= killed, (h, killed)
    assert h["reason"].startswith("2 consecutive failures: connect"), h
    assert h["detail"].startswith("connect"), h
    logged = 'reason="' + h["reason"] + '"'
    assert logged in keeld.log(), (logged, keeld.log())
    table = keeld.keelctl("health", "show", "web").stdout
    assert table.splitlines()[0].split() == ["Service", "Real", "State", "Check", "Run", "Last", "result",
                                             "Changed", "Reason"], table
    row = next(line for line in table.splitlines() if f" {dead.v4} " in line)
    assert " down " in row and "consecutive failures" in row, table
    got = names(lab.flows("tcp", lab.vip4, PORT, count=60))
    assert dead.role not in got, got
    assert "all_reals_down" not in keeld.log()
    lab.restart_server(dead)
    wait_states(keeld, {dead.v4: "up"})
    assert names(lab.flows("tcp", lab.vip4, PORT, count=60))[dead.role] > 0


def test_all_down_fails_open(keel_health):
    lab, _, keeld = keel_health
    for real in lab.reals:
        lab.stop_server(real)
    wait_states(keeld, {r.v4: "down" for r in lab.reals})
    assert "all_reals_down" in keeld.log()
    # The last real to go down stays in the ring: the ring is not empty.
    assert show(keeld)["published_ring_size"] > 0
    for real in lab.reals:
        lab.restart_server(real)
    wait_states(keeld, {r.v4: "up" for r in lab.reals})


def test_drain_keeps_established(keel_health):
    lab, _, keeld = keel_health
    conns = []
    try:
        before = connect_and_ask(lab, PORT, 12, conns)
        target = next(r for r in lab.reals if r.role in before)
        t0 = datetime.now(timezone.utc).replace(microsecond=0)
        keeld.keelctl("real", "drain", "web", target.v4, "--reason", "kernel upgrade INC-7")
        assert states(keeld)[target.v4] == "draining"
        h = health_of(keeld, target.v4)
        assert h["drain_reason"] == "kernel upgrade INC-7", h
        since = datetime.strptime(h["drained_since"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert t0 <= since <= datetime.now(timezone.utc), (t0, h)
        table = keeld.keelctl("health", "show", "web").stdout
        row = next(line for line in table.splitlines() if f" {target.v4} " in line)
        assert " draining " in row and row.endswith("drained: kernel upgrade INC-7"), table
        assert "event=real_drained" in keeld.log() and "kernel upgrade INC-7" in keeld.log()
        got = names(lab.flows("tcp", lab.vip4, PORT, count=60))
        assert target.role not in got, got
        after = [ask(s) for s in conns]
        assert after == before, (before, after)
        keeld.keelctl("real", "undrain", "web", target.v4)
        assert states(keeld)[target.v4] == "up"
        h = health_of(keeld, target.v4)
        assert h["drained_since"] is None and h["drain_reason"] is None, h
        assert names(lab.flows("tcp", lab.vip4, PORT, count=60))[target.role] > 0
    finally:
        for s in conns:
            s.close()


def test_invalid_reload_changes_nothing(keel_health):
    lab, _, keeld = keel_health
    good = keeld.config_path.read_text()
    before = show(keeld)
    try:
        keeld.config_path.write_text(good.replace('"weight": 100', '"weight": "abc"', 1)
                                     if '"weight": 100' in good else
                                     good.replace("weight: 100", 'weight: "abc"', 1))
        p = keeld.keelctl("config", "reload", check=False)
        assert p.returncode != 0
        assert f"{keeld.config_path.name}:" in p.stdout + p.stderr, p.stdout + p.stderr
        after = show(keeld)
        strip = lambda s: [(r["address"], r["weight"], r["state"]) for r in s["reals"]]  # noqa: E731
        assert strip(after) == strip(before)
    finally:
        keeld.config_path.write_text(good)
    assert keeld.keelctl("config", "reload").returncode == 0


def test_service_list(keel_health):
    lab, _, keeld = keel_health
    table = keeld.keelctl("service", "list").stdout
    assert "web" in table
    for real in lab.reals:
        assert real.v4 in table
    out = json.loads(keeld.keelctl("-o", "json", "service", "list").stdout)
    services = out.get("services", out) if isinstance(out, dict) else out
    web_ = next(s for s in services if s["name"] == "web")
    assert web_["vip"] == lab.vip4 and web_["port"] == PORT
    assert sorted(r["address"] for r in web_["reals"]) == sorted(r.v4 for r in lab.reals)
    assert all(r["state"] == "up" for r in web_["reals"])


@pytest.fixture
def keel_plain(request, lab, need_keel):
    svc = lab.service("web", 4, PORT, "tcp", "ipip")
    yield from run_keel(request, lab, lab.keel_config([svc]), with_handle=True)


@pytest.mark.parametrize("detach", [False, True], ids=["stop", "stop-detach"])
def test_daemon_stop(keel_plain, detach):
    """`keelctl daemon stop` ends keeld cleanly; with --detach the balancer
    stays attached and keeps serving with the last state. A data plane that
    cannot outlive keeld (DPDK) refuses --detach, keeps serving, and stops
    on a plain stop."""
    lab, _, keeld = keel_plain
    if detach and not lab.plane.can_detach:
        p = keeld.keelctl("daemon", "stop", "--detach", check=False)
        assert p.returncode != 0 and "detach" in p.stdout + p.stderr, p.stdout + p.stderr
        assert keeld.proc.poll() is None, keeld.log()
        served(lab.flows("tcp", lab.vip4, PORT, count=5))
        detach = False
    keeld.keelctl("daemon", "stop", *(["--detach"] if detach else []))
    assert keeld.proc.wait(timeout=15) == 0, keeld.log()
    assert lab.plane.attached(lab) == detach
    if detach:
        served(lab.flows("tcp", lab.vip4, PORT, count=5))


def test_lookup_and_health_show(keel_health):
    """`keelctl lookup` names the real the data plane picks for a flow, for
    flows actually sent (the ring it reads is the one published), and
    `health show` reports every real's check."""
    lab, _, keeld = keel_health
    by_addr = {r.v4: r.role for r in lab.reals}
    for flow in lab.flows("tcp", lab.vip4, PORT, count=12):
        assert "real" in flow, flow
        out = json.loads(keeld.keelctl("-o", "json", "lookup", "web",
                                       "--client", f"{flow['src']}:{flow['sport']}").stdout)
        assert by_addr[out["real"]] == flow["real"], (out, flow)
    health = json.loads(keeld.keelctl("-o", "json", "health", "show", "web").stdout)
    svc = health["services"][0] if "services" in health else health
    assert sorted(r["address"] for r in svc["reals"]) == sorted(by_addr)
    assert all(r["check"] == "tcp" and r["state"] == "up" for r in svc["reals"]), svc
