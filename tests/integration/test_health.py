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
  - `keelctl service list` as a table and as JSON;
  - `health: {established_on_down: keep}`: a real whose check fails while
    its service still serves leaves the ring, but TCP connections already on
    it keep round-tripping to it (and are there when it comes back); with
    the default, `repick`, the same connections are moved off it (reset).
Checks are TCP connects to :8080 (the keep tests: :8081, an endpoint apart
from the service) every 200ms, fall 2, rise 2. Every wait is bounded in
count and time."""
import json
import re
import socket
import time
from datetime import datetime, timezone

import pytest

from suite import (HEALTH_INTERVAL_S, STATE_WAIT_S, ask, checked_service, connect_and_ask, run_checked_keel, run_keel,
                   served, show_service, wait_states)
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
    # The last real to go down stays in the ring: the ring is not empty,
    # and health show names it held (keelctl: "down, held").
    assert show(keeld)["published_ring_size"] > 0
    held = [r.v4 for r in lab.reals if health_of(keeld, r.v4)["held"]]
    assert len(held) == 1, held
    table = keeld.keelctl("health", "show", "web").stdout
    assert table.count("down, held") == 1, table
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
        # daemon.status says so: the file differs from what runs, the
        # reload was refused and why, and the config was applied at start.
        st = json.loads(keeld.keelctl("-o", "json", "daemon", "status").stdout)
        cfg = st["config"]
        assert cfg["file_changed"] is True and cfg["applied_by"] == "start", st
        assert cfg["last_reload"]["ok"] is False and cfg["last_reload"]["code"] == "invalid_config", st
        assert any(f"{keeld.config_path.name}:" in e for e in cfg["last_reload"]["errors"]), st
        text = keeld.keelctl("daemon", "status").stdout
        assert "CHANGED ON DISK" in text and "LAST RELOAD REFUSED" in text, text
    finally:
        keeld.config_path.write_text(good)
    assert keeld.keelctl("config", "reload").returncode == 0
    st = json.loads(keeld.keelctl("-o", "json", "daemon", "status").stdout)
    assert st["config"]["file_changed"] is False and st["config"]["applied_by"] == "reload", st
    assert st["config"]["last_reload"]["ok"] is True and "errors" not in st["config"]["last_reload"], st
    assert st["dataplane"]["kind"] == lab.dataplane and st["dataplane"]["adopted"] is False, st


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



# established_on_down. The check goes to CHECK_PORT, served on each real by
# an endpoint apart from its service (lab.start_endpoint), so a real can
# fail its check while :80 still serves: the flows kept on it can answer.
CHECK_PORT = 8081
# How long the connections held on the downed real are watched: `repick`
# must have moved them within it, `keep` must keep them on their real
# throughout, so a `keep` that behaved as `repick` cannot pass unseen (docs:
# a down real's flows re-pick within one check interval).
WATCH_S = 10 * HEALTH_INTERVAL_S


@pytest.fixture
def keel_on_down(request, lab, need_keel):
    """keel_health with the check on CHECK_PORT and the service's
    established_on_down set to the indirect parameter (None: not set, the
    default). Yields (lab, keeld, {real role: its check endpoint})."""
    endpoints = {}
    try:
        for real in lab.reals:
            endpoints[real.role] = lab.start_endpoint(real, CHECK_PORT)
        svc = checked_service(lab, port=PORT)
        svc["health"]["port"] = CHECK_PORT
        if request.param:
            svc["health"]["established_on_down"] = request.param
        for lab_, _, keeld in run_checked_keel(request, lab, lab.keel_config([svc])):
            yield lab_, keeld, endpoints
    finally:
        for proc in endpoints.values():
            lab.stop_endpoint(proc)


def logged(keeld, event: str, real: str, after: int) -> str:
    """keeld's first EVENT record about REAL past log offset AFTER, waited
    for (bounded)."""
    pattern = re.compile(rf"event={event} service=web real={re.escape(real)}(\s|$)")
    deadline = time.monotonic() + STATE_WAIT_S
    while time.monotonic() < deadline:
        line = next((ln for ln in keeld.full_log()[after:].splitlines() if pattern.search(ln)), None)
        if line:
            return line
        time.sleep(0.05)
    pytest.fail(f"keeld did not log {event} for {real} within {STATE_WAIT_S}s:\n{keeld.log()}")


def fail_check_under_conns(lab, keeld, endpoints, conns, drain=False):
    """Opens connections through the VIP (into CONNS, which the caller
    closes), then fails the check of a real that serves some of them, A, by
    stopping its check endpoint only (DRAIN: drains A first). Once keeld has
    logged A's real_down (after writing the data plane) and health show says
    down, returns (A, what each connection answered, the connections on A,
    keeld's health_changed and real_down records)."""
    before = connect_and_ask(lab, PORT, 12, conns)
    target = next(r for r in lab.reals if r.role in before)
    if drain:
        keeld.keelctl("real", "drain", "web", target.v4)
    mark = len(keeld.full_log())
    lab.stop_endpoint(endpoints[target.role])
    down = logged(keeld, "real_down", target.v4, mark)
    changed = logged(keeld, "health_changed", target.v4, mark)
    h = health_of(keeld, target.v4)
    assert h["state"] == ("draining" if drain else "down"), h
    assert h["reason"].startswith("2 consecutive failures: connect"), h
    held = [s for s, b in zip(conns, before) if b == target.role]
    return target, before, held, changed, down


def lookup_conn(keeld, sock) -> dict:
    """`keelctl lookup`'s view of an open connection's own table entry."""
    src, sport = sock.getsockname()[:2]
    return json.loads(keeld.keelctl("-o", "json", "lookup", "web", "--client", f"{src}:{sport}").stdout)["connection"]


def answers_directly(lab, real) -> str:
    """What REAL's service port answers a connection from the balancer's
    own address (not through the VIP)."""
    with lab.balancer.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect((real.v4, PORT))
        return ask(s)


def assert_others_unmoved(lab, target, conns, before):
    """Connections on the other reals answer as before, and new flows avoid
    the down real."""
    others = [(s, b) for s, b in zip(conns, before) if b != target.role]
    assert [ask(s) for s, _ in others] == [b for _, b in others]
    got = served(lab.flows("tcp", lab.vip4, PORT, count=60))
    assert target.role not in got, f"new flows still reach down {target.role}: {got}"


@pytest.mark.parametrize("keel_on_down", ["keep"], indirect=True)
def test_down_keeps_established(keel_on_down):
    """established_on_down: keep. A's check fails (its service still
    serves): keeld marks it down and new flows avoid it, but the TCP
    connections already on it keep round-tripping to A, and are still there
    once A is back up."""
    lab, keeld, endpoints = keel_on_down
    conns = []
    try:
        target, before, held, changed, down = fail_check_under_conns(lab, keeld, endpoints, conns)
        # Every request on A's connections still round-trips to A, for as
        # long as a repick would have had to move them.
        deadline = time.monotonic() + WATCH_S
        rounds = 0
        while True:
            got = [ask(s) for s in held]
            rounds += 1
            assert got == [target.role] * len(held), \
                f"established flows on down {target.role} (keep) answered {got} in round {rounds}"
            if time.monotonic() >= deadline:
                break
            time.sleep(HEALTH_INTERVAL_S)
        print(f"{lab.dataplane} keep: {len(held)} flows on down {target.role} answered by it "
              f"{rounds} times over {WATCH_S}s")
        for s in held:  # their entries, as the data plane holds them: kept on A
            c = lookup_conn(keeld, s)
            assert c["real"] == target.v4 and c["kept"] and c["state"] == "kept", c
        h = health_of(keeld, target.v4)  # health show: down, kept
        assert h["kept"] is True and h["held"] is False, h
        assert_others_unmoved(lab, target, conns, before)
        assert "state=down" in changed and "established_on_down=keep" in changed, changed
        assert "established=kept" in down, down
        # Back up: into the ring at the generation it kept, so its
        # connections are still there, and new flows reach it again.
        endpoints[target.role] = lab.start_endpoint(target, CHECK_PORT)
        wait_states(keeld, {target.v4: "up"})
        assert [ask(s) for s in held] == [target.role] * len(held)
        assert names(lab.flows("tcp", lab.vip4, PORT, count=60))[target.role] > 0
    finally:
        for s in conns:
            s.close()


@pytest.mark.parametrize("keel_on_down", [None], indirect=True, ids=["default"])
def test_drained_down_keeps_established(keel_on_down):
    """Under the default (repick) too, a drained real whose check then fails
    keeps its established flows: the drain promised them their end, and a
    graceful stop fails the check while it finishes what is in flight."""
    lab, keeld, endpoints = keel_on_down
    conns = []
    try:
        target, before, held, changed, down = fail_check_under_conns(lab, keeld, endpoints, conns, drain=True)
        assert "established_on_down=repick" in changed and "established=kept" in down, (changed, down)
        deadline = time.monotonic() + WATCH_S
        while True:
            got = [ask(s) for s in held]
            assert got == [target.role] * len(held), f"flows on drained, down {target.role} answered {got}"
            if time.monotonic() >= deadline:
                break
            time.sleep(HEALTH_INTERVAL_S)
        for s in held:
            c = lookup_conn(keeld, s)
            assert c["real"] == target.v4 and c["kept"], c
        assert health_of(keeld, target.v4)["kept"] is True
        assert_others_unmoved(lab, target, conns, before)
    finally:
        for s in conns:
            s.close()


@pytest.mark.parametrize("keel_on_down", [None], indirect=True, ids=["default"])
def test_down_repicks_established(keel_on_down):
    """The contrast: the same down under the default (repick) moves A's
    established flows, within WATCH_S, to a real that never saw their
    handshake (it resets them), though A's service still serves."""
    lab, keeld, endpoints = keel_on_down
    conns = []
    try:
        target, before, held, changed, down = fail_check_under_conns(lab, keeld, endpoints, conns)
        for s in held:
            c = lookup_conn(keeld, s)
            assert c["real"] == target.v4 and not c["kept"], c
        h = health_of(keeld, target.v4)
        assert h["kept"] is False and h["held"] is False, h
        deadline = time.monotonic() + WATCH_S
        moved = {}  # connection -> its first answer not from A
        while len(moved) < len(held) and time.monotonic() < deadline:
            for s in held:
                if s not in moved and (a := ask(s)) != target.role:
                    moved[s] = a
            if len(moved) < len(held):
                time.sleep(HEALTH_INTERVAL_S)
        assert len(moved) == len(held), f"{len(held) - len(moved)} established flows on down " \
                                        f"{target.role} (repick) still answered by it after {WATCH_S}s"
        # Reset by the real the ring picked (or unanswered), never served.
        assert not any(a.startswith("real") for a in moved.values()), list(moved.values())
        print(f"{lab.dataplane} repick: {len(held)} flows on {target.role} moved within "
              f"{WATCH_S - (deadline - time.monotonic()):.2f}s, answering {sorted(moved.values())}")
        assert answers_directly(lab, target) == target.role
        assert_others_unmoved(lab, target, conns, before)
        assert "state=down" in changed and "established_on_down=repick" in changed, changed
        assert "established=repicked" in down, down
    finally:
        for s in conns:
            s.close()
