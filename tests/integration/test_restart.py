# SPDX-License-Identifier: Apache-2.0
"""Hitless restart (keeld(8) RESTARTS): keeld is killed with SIGKILL while a
TCP connection and a UDP flow exchange messages without pause, and restarted:
  - nothing is lost and every established flow keeps its real, while no keeld
    runs and across the adoption;
  - the same config keeps the attached program (its id does not change);
  - a restart whose config lists a new service first and drains the real of
    the established flows keeps them there (the registry's ids and
    generations were rebuilt from the pinned maps, not handed out afresh);
  - a drain made with keelctl survives the restart (with its time and
    reason), and so do a service and reals added and a file real removed
    with keelctl (l2dsr reals added without a MAC resolve it from the
    neighbour table, as the file's do; one the table lacks is held down):
    the added service's established flows keep their reals;
  - SIGTERM leaves forwarding in place by default; --detach-on-exit removes
    the attachment and the pins;
  - a second keeld beside a running one is refused before it touches the
    data plane (the live socket, the pin directory's lock);
  - the balancer's interface deleted and created again under a running
    keeld gets the program again at once, at the interface's link message
    (with the 5 s upkeep timer as the fallback; with it set to an hour the
    link message alone does it, and an MTU change is seen the same way),
    and removed pins are pinned again (at the latest by the stop that
    leaves the plane), so flows keep their reals and the next keeld adopts;
  - DPDK (nothing to adopt): after a SIGTERM the next keeld starts the
    checked reals that were up at once, so established TCP connections are
    picked again onto the reals they had; and it loads the connection tables
    the stop saved, so connections of a drained real (which the ring no
    longer picks) stay on it too, also when the worker count changed (every
    entry copied into every worker's table).
keelds run in a KeeldHost (lab.py), whose bpffs and /run/keel outlive each of them."""
import copy
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import lab as labmod
from suite import ask, connect_and_ask, real_states, served, show_service, wait_serving, wait_states

PORT = 80
EXTRA_PORT = 8080
N_CONN = 12
PUMP_S = 300.0            # time bound on each pump: far past every restart below (each keeld start waits 15 s at most)
PUMP_PAUSE_S = 0.005      # between one pump's exchanges
# Count bound on each pump: each exchange is followed by a pause of at least
# PUMP_PAUSE_S, so the count cannot be reached before the time bound,
# however fast or slow the box.
PUMP_MAX = int(PUMP_S / PUMP_PAUSE_S) + 1
PUMP_TIMEOUT_S = 3.0      # a reply later than this counts as lost


class Pump:
    """One flow exchanging request/reply, PUMP_PAUSE_S apart, in a thread (bounded
    by PUMP_S, and by PUMP_MAX exchanges, which the time bound reaches
    first), recording who answered each request or that it was lost.
    `ended` says which bound stopped it (None: running, or finished)."""

    def __init__(self, lab, kind):
        fam_kind = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
        self.sock = lab.client.socket(socket.AF_INET, fam_kind)
        self.sock.settimeout(PUMP_TIMEOUT_S)
        self.sock.connect((lab.vip4, PORT))
        self.kind = kind
        self.answers = []
        self.ended = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self):
        if self.kind == "tcp":
            return ask(self.sock)
        try:
            self.sock.send(b"again\n")
            return self.sock.recv(2048).decode().strip()
        except OSError as e:
            return type(e).__name__

    def start(self):
        self.answers.append(self._one())  # the flow's real, before anything happens
        self._thread.start()
        return self

    def _run(self):
        deadline = time.monotonic() + PUMP_S
        while not self._stop.is_set():
            if time.monotonic() >= deadline:
                self.ended = f"time bound ({PUMP_S:g} s)"
                return
            if len(self.answers) >= PUMP_MAX:
                self.ended = f"count bound ({PUMP_MAX} exchanges)"
                return
            self.answers.append(self._one())
            self._stop.wait(PUMP_PAUSE_S)

    def mark(self):
        return len(self.answers)

    def finish(self):
        self._stop.set()
        self._thread.join(timeout=PUMP_TIMEOUT_S + 5)
        self.sock.close()
        return self.answers


def configs(lab):
    web = lab.service("web", 4, PORT, "tcp", "ipip")
    dgram = lab.service("dgram", 4, PORT, "udp", "ipip")
    return web, dgram


def drops(lab):
    reasons = lab.reasons()
    assert reasons is not None, "no keeld runs"
    return {k: v for k, v in reasons.items() if k.startswith("drop_")}


def test_kill_and_restart_loses_nothing_and_moves_no_flow(lab, host):
    web, dgram = configs(lab)
    config = lab.keel_config([web, dgram])
    k1 = host.start(config, "first")
    wait_serving(lab, config)
    prog = lab.balancer_prog_id()
    conns = []
    pumps = []
    try:
        before = connect_and_ask(lab, PORT, N_CONN, conns)
        drops0 = drops(lab)
        pumps = [Pump(lab, "tcp").start(), Pump(lab, "udp").start()]

        # 1. kill -9: forwarding goes on with nobody in charge.
        k1.kill()
        assert lab.balancer_prog_id() == prog
        served(lab.flows("tcp", lab.vip4, PORT, count=5))
        marks = [p.mark() for p in pumps]

        # 2. The same config: adopted, the program kept, nothing re-attached.
        k2 = host.start(config, "second")
        log = k2.log()
        assert "event=dataplane_adopted" in log and "program=kept" in log, log
        assert lab.balancer_prog_id() == prog
        st = json.loads(k2.keelctl("-o", "json", "daemon", "status").stdout)
        assert st["dataplane"]["adopted"] is True and st["config"]["applied_by"] == "start", st
        assert "adopted from the keeld before" in k2.keelctl("daemon", "status").stdout
        assert [ask(s) for s in conns] == before
        # A runtime drain (keelctl) of the UDP flow's real: kept across the
        # next restart (runtime state file), its flow stays.
        udp_real = pumps[1].answers[0]
        udp_addr = lab.real_by_name(udp_real).v4
        k2.keelctl("real", "drain", "dgram", udp_addr, "--reason", "restart test")
        drain_record = {k: v for k, v in next(r for r in show_service(k2, "dgram")["reals"]
                                              if r["address"] == udp_addr).items()
                        if k in ("drained_since", "drain_reason")}
        assert drain_record["drain_reason"] == "restart test", drain_record
        k2.kill()

        # 3. A new service listed first (a fresh registry would give it the
        #    ids web had) and web's real of the first connection drained: the
        #    established flows must stay, new ones must avoid it.
        drained = before[0]
        drained_addr = lab.real_by_name(drained).v4
        web3 = dict(web, reals=[dict(r, weight=0) if r["address"] == drained_addr else r
                                for r in web["reals"]])
        extra = lab.service("extra", 4, EXTRA_PORT, "tcp", "ipip")
        config3 = lab.keel_config([extra, web3, dgram])
        k3 = host.start(config3, "third")
        log3 = k3.log_path.read_text(errors="replace")  # whole: log() keeps the last 4000 characters
        assert "event=dataplane_adopted" in log3
        # The file changed while no keeld ran: the start says what.
        assert "event=config_changed_while_stopped" in log3, log3
        assert re.search(rf"event=real_weight_changed service=web real={re.escape(drained_addr)} from=\d+ to=0",
                         log3), log3
        shown = show_service(k3, "dgram")
        draining = {r["address"]: r["draining"] for r in shown["reals"]}
        assert draining[udp_addr] and sum(draining.values()) == 1, draining
        # ... with the drain's time and reason.
        real3 = next(r for r in shown["reals"] if r["address"] == udp_addr)
        assert {k: real3[k] for k in drain_record} == drain_record, (real3, drain_record)
        assert udp_real not in served(lab.flows("udp", lab.vip4, PORT, count=10))
        after = [ask(s) for s in conns]
        moved = [(i, before[i], after[i]) for i in range(N_CONN) if after[i] != before[i]]
        assert not moved, f"established flows changed real across the restart: {moved}"
        fresh = served(lab.flows("tcp", lab.vip4, PORT, count=20))
        assert drained not in fresh, fresh
        served(lab.flows("tcp", lab.vip4, EXTRA_PORT, count=3))
        ended3 = {p.kind: p.ended for p in pumps}

        answers = {p.kind: p.finish() for p in pumps}
        pumps = []
        for kind, got in answers.items():
            assert len(set(got)) == 1 and got[0].startswith("real"), \
                f"{kind} flow: lost or moved: {sorted(set(got))} ({len(got)} exchanges)"
        for kind, m in zip(("tcp", "udp"), marks):
            assert len(answers[kind]) > m, f"{kind} pump made no exchange after the kill"
        # Still pumping once the third keeld served (not stopped by a bound
        # before it): every adoption above happened under its traffic.
        for kind, ended in ended3.items():
            assert ended is None, f"{kind} pump stopped at its {ended} before the third keeld served"
        assert drops(lab) == drops0, (drops0, drops(lab))
        print(f"exchanges without loss: tcp {len(answers['tcp'])}, udp {len(answers['udp'])}")

        # 4. SIGTERM: by default forwarding stays, pins too.
        assert k3.stop() == 0, k3.log()
        assert lab.balancer_prog_id() == prog
        assert host.pinned("prog")
        assert [ask(s) for s in conns] == before
    finally:
        for p in pumps:
            p.finish()
        for s in conns:
            s.close()

    # 5. --detach-on-exit: adopts like any keeld, then removes everything.
    k4 = host.start(config3, "fourth", args=("--detach-on-exit",))
    assert "program=kept" in k4.log()
    assert k4.stop() == 0, k4.log()
    assert lab.balancer_prog_id() is None
    assert not host.pinned()


def test_runtime_changes_survive_kill_and_restart(lab, host):
    web, _ = configs(lab)
    config = lab.keel_config([web])
    r1, r2, r3 = lab.reals[:3]
    k1 = host.start(config, "rt1")
    wait_serving(lab, config)
    # An l2dsr service with a health check, its reals without MACs; a third
    # real added to it; web's third real removed.
    health = {"type": "tcp", "interval": "200ms", "rise": 1, "fall": 3}
    k1.keelctl("service", "add", "added", "--vip", lab.vip4, "--port", str(EXTRA_PORT),
               "--protocol", "tcp", "--forwarding", "l2dsr", "--real", r1.v4,
               "--real", f"{r2.v4}:50", "--health", json.dumps(health))
    k1.keelctl("real", "add", "added", r3.v4)
    k1.keelctl("real", "remove", "web", r3.v4)
    # A real the neighbour table lacks is added, held down with the table's
    # words as its reason, and removed again (not retried any more).
    unknown = labmod.LAN_NET4 + "99"
    k1.keelctl("real", "add", "added", unknown)
    shown = json.loads(k1.keelctl("-o", "json", "health", "show", "added").stdout)
    held = {r["address"]: r for r in shown["services"][0]["reals"]}[unknown]
    assert held["state"] == "down" and held["reason"] == f"l2dsr: {unknown} not in the neighbour table of eth0", held
    k1.keelctl("real", "remove", "added", unknown)
    added = {"name": "added", "protocol": "tcp", "vip": lab.vip4, "port": EXTRA_PORT}
    wait_serving(lab, {"services": [added]})
    reals = {r["address"]: r for r in show_service(k1, "added")["reals"]}
    assert {a: r["mac"] for a, r in reals.items()} == {h.v4: h.mac for h in (r1, r2, r3)}
    assert "event=real_mac_resolved" in k1.log()

    conns = []
    try:
        before = connect_and_ask(lab, EXTRA_PORT, N_CONN, conns)
        k1.kill()

        k2 = host.start(config, "rt2")
        log = k2.log()
        assert "event=dataplane_adopted" in log and "runtime_state_dropped" not in log, log
        # `ready` counts what runs (web's 2 reals and the added service's 3),
        # not the file alone (1 service, 3 reals).
        assert "services=2 reals=5" in [line for line in log.splitlines() if "event=ready" in line][-1], log
        after = show_service(k2, "added")
        assert after["forwarding"] == "l2dsr", after
        assert {r["address"]: (r["weight"], r["state"]) for r in after["reals"]} == \
            {r1.v4: (100, "up"), r2.v4: (50, "up"), r3.v4: (100, "up")}, after
        assert {r["address"] for r in show_service(k2, "web")["reals"]} == {r1.v4, r2.v4}
        health_shown = json.loads(k2.keelctl("-o", "json", "health", "show", "added").stdout)
        assert "tcp" in json.dumps(health_shown), health_shown
        moved = [(i, b, a) for i, (b, a) in enumerate(zip(before, [ask(s) for s in conns])) if a != b]
        assert not moved, f"the added service's flows changed real across the restart: {moved}"
        assert r3.role not in served(lab.flows("tcp", lab.vip4, PORT, count=20))
        served(lab.flows("tcp", lab.vip4, EXTRA_PORT, count=3))
    finally:
        for s in conns:
            s.close()
    # Taking the balancer out forgets the runtime changes with the pins.
    assert host.exists(host.state_path)
    k2.keelctl("daemon", "stop")
    k2.proc.wait(timeout=10)
    k2.stop()
    assert not host.exists(host.state_path)


def test_a_second_keeld_is_refused_and_leaves_the_first_serving(lab, host):
    """A second keeld on the interface a running keeld owns (started by hand
    beside keeld.service) is refused before it touches the data plane: with
    the same control socket by the live socket, with another socket by the
    lock on the pin directory. Before, it adopted the pins, replaced the
    first one's services with its own file's and rewrote the runtime state,
    then failed on the socket, leaving every VIP of the first one gone."""
    web, dgram = configs(lab)
    config = lab.keel_config([web])
    k1 = host.start(config, "first")
    wait_serving(lab, config)
    drained = lab.reals[2]
    k1.keelctl("real", "drain", "web", drained.v4)
    state = host.run(["cat", host.state_path]).stdout
    other = lab.keel_config([dgram])  # would replace web with dgram
    other_socket = copy.deepcopy(other)
    other_socket["control"] = {"socket": "/run/keel/second.sock"}
    other_socket["metrics"] = {"address": "127.0.0.1:9478"}  # the first keeld's port is refused first
    for name, cfg, why in (("second-same-socket", other, "another process is serving it"),
                           ("second-other-socket", other_socket,
                            f"{host.pin_dir} is locked by another keeld (pid ")):
        k = host.start(cfg, name, wait_ready=False)
        assert k.proc.wait(timeout=30) == 1, k.log()
        log = k.log()
        assert why in log, log
        assert "dataplane_adopted" not in log and "service_removed" not in log, log
    assert k1.proc.poll() is None
    flows = lab.flows("tcp", lab.vip4, PORT, count=20)
    assert drained.role not in served(flows), "the first keeld's drain was lost"
    assert show_service(k1, "web")["reals"], "the first keeld's service is gone"
    assert host.run(["cat", host.state_path]).stdout == state, "the runtime state was rewritten"
    k1.stop()


def test_a_keeld_started_while_the_last_is_still_stopping_waits_for_it(lab, host):
    """A supervisor that starts the next keeld without waiting for the last
    to exit (SIGTERM, or kill -9 while its threads end, then a start at
    once): the new one waits, up to 5 s, for the control socket to be let
    go, and starts (live restart review: refused at once with
    control_socket_failed, leaving no keeld). Here a stand-in serves the
    default socket for 1.5 s; then a SIGTERM'd keeld and a start at once."""
    web, _ = configs(lab)
    config = lab.keel_config([web])
    holder = subprocess.Popen(host.argv([
        "/usr/bin/python3", "-c",
        "import os, socket, time; os.makedirs('/run/keel', exist_ok=True); "
        "s = socket.socket(socket.AF_UNIX); s.bind('/run/keel/keel.sock'); s.listen(); "
        "print('ready', flush=True); time.sleep(1.5)"]), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        k1 = host.start(config, "first")
        log = k1.log()
        assert "control_socket_failed" not in log, log
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=5)
    wait_serving(lab, config)
    k1.proc.send_signal(signal.SIGTERM)
    k2 = host.start(config, "second")
    assert k1.proc.wait(timeout=10) == 0
    log = k2.log()
    assert "control_socket_failed" not in log and "event=dataplane_adopted" in log, log
    wait_serving(lab, config)
    assert k2.stop() == 0, k2.log()


def test_a_state_directory_others_may_write_is_warned_about(lab, host):
    """control.socket in a directory other users may write (/tmp-like):
    keeld reads its runtime state back from there at start, so such a user
    could replace it (security review: a forged file drained every real).
    Said at start (state_dir_unsafe); /run/keel itself is not."""
    web, _ = configs(lab)
    config = lab.keel_config([web])
    host.run(["sh", "-c", "mkdir -p /run/keel/w && chmod 1777 /run/keel/w"])
    config["control"] = {"socket": "/run/keel/w/keel.sock"}
    k = host.start(config, "open-dir")
    assert "event=state_dir_unsafe dir=/run/keel/w" in k.log(), k.log()
    assert k.stop() == 0, k.log()
    del config["control"]
    k = host.start(config, "run-keel")
    assert "state_dir_unsafe" not in k.log(), k.log()
    assert k.stop() == 0, k.log()


def test_a_start_that_cannot_serve_its_sockets_leaves_the_adopted_plane_as_it_was(lab, host):
    """A restart whose control socket cannot be served left the adopted
    plane programmed with the refused file's services and the runtime state
    rewritten (a drain lost), then exited (input review H1). A path that is
    no socket is an error of the file now, found before the data plane; and
    the sockets are served before the plane is programmed, so a bind that
    fails (here the read-only socket's directory is a read-only mount)
    changes nothing either."""
    if lab.dataplane != "xdp":
        pytest.skip("nothing to adopt on DPDK")
    web, dgram = configs(lab)
    config = lab.keel_config([web])
    k1 = host.start(config, "first")
    wait_serving(lab, config)
    drained = lab.reals[2]
    k1.keelctl("real", "drain", "web", drained.v4)
    assert k1.stop() == 0, k1.log()
    state = host.run(["cat", host.state_path]).stdout  # with the stop's record
    assert drained.v4 in state
    host.run(["sh", "-c", "echo precious > /run/keel/notasock; mkdir -p /run/keel/ro; "
                          "mount -t tmpfs -o ro,size=64k tmpfs /run/keel/ro"])
    try:
        other = lab.keel_config([dgram])  # would replace web with dgram
        not_a_socket = copy.deepcopy(other)
        not_a_socket["control"] = {"socket": "/run/keel/notasock"}
        read_only = copy.deepcopy(other)
        read_only["control"] = {"readonly": {"socket": "/run/keel/ro/keel-ro.sock"}}
        # The file's error is a config_error record: its quotes escaped.
        for name, cfg, why in (("not-a-socket", not_a_socket,
                                '\\"/run/keel/notasock\\" exists and is not a socket'),
                               ("read-only", read_only, "keel-ro.sock: bind: Read-only file system")):
            k = host.start(cfg, name, wait_ready=False)
            assert k.proc.wait(timeout=30) == 1, k.log()
            log = k.log()
            assert why in log, log
            if name == "not-a-socket":
                assert "event=config_error" in log and "event=start_rejected" in log, log
            for changed in ("service_removed", "service_added", "real_removed", "runtime_state_dropped"):
                assert changed not in log, log
            assert host.run(["cat", host.state_path]).stdout == state, "the runtime state was rewritten"
        assert host.run(["cat", "/run/keel/notasock"]).stdout == "precious\n"
        flows = lab.flows("tcp", lab.vip4, PORT, count=20)
        assert served(flows) and drained.role not in served(flows), "the drained real got new flows"
    finally:
        host.run(["sh", "-c", "umount /run/keel/ro; rm -f /run/keel/notasock; rmdir /run/keel/ro"], check=False)
    k3 = host.start(config, "third")
    assert show_service(k3, "web")["reals"], k3.log()
    k3.stop()


def left_in_place(lab, host):
    """An XDP keeld of web started, serving, and stopped with its plane left
    attached and pinned (a plain stop): its config and the program's id."""
    web, _ = configs(lab)
    config = lab.keel_config([web])
    k = host.start(config, "first")
    wait_serving(lab, config)
    assert k.stop() == 0, k.log()
    prog = lab.balancer_prog_id()
    assert prog is not None and host.pinned("prog") and host.pinned("conntrack"), \
        "the XDP plane was not left in place"
    return config, prog


def test_other_limits_over_a_pinned_plane_are_refused_by_check_config_and_start(lab, host):
    """A limits: change needs a fresh data plane: the next keeld refuses to
    adopt maps pinned at other sizes. keeld --check-config, which operators
    run before a restart, says so too (it passed such a file before, and the
    restart then failed with the old plane forwarding and no keeld). The
    refused start leaves the plane as it was; the old file still adopts."""
    config, prog = left_in_place(lab, host)
    same = host.check_config(config, "same-check")
    assert same.returncode == 0, same.stdout + same.stderr
    bigger = copy.deepcopy(config)
    bigger.setdefault("limits", {})["conn_table_size"] = 2 * config.get("limits", {}).get(
        "conn_table_size", 1000000)
    want = f"limits.conn_table_size: {bigger['limits']['conn_table_size']}, but the pinned map " \
           f"{host.pin_dir}/conntrack was made with"
    checked = host.check_config(bigger, "bigger-check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert want in checked.stderr and "a restart would refuse the file" in checked.stderr, checked.stderr
    k2 = host.start(bigger, "bigger", wait_ready=False)
    assert k2.proc.wait(timeout=30) == 1, k2.log()
    assert want in k2.log(), k2.log()
    assert lab.balancer_prog_id() == prog, "the refused keeld touched the XDP plane"
    wait_serving(lab, config)  # still forwarding, with the first keeld's state
    k3 = host.start(config, "third")
    assert show_service(k3, "web")["reals"], k3.log()
    k3.stop()


def test_a_dpdk_keeld_is_refused_while_an_xdp_plane_is_left_on_its_interface(lab, host):
    """kind switched from xdp to dpdk by a plain restart: the XDP plane the
    first keeld left attached (and pinned) would go on taking the VIP
    traffic first with its last state, and no keeld to change it. The DPDK
    keeld is refused before EAL runs, naming the pins and how to take them
    out; the XDP plane is left as it was."""
    config, prog = left_in_place(lab, host)
    dpdk = copy.deepcopy(config)
    dpdk["dataplane"] = labmod.DpdkDataplane().config(lab)
    # dataplane.interface defaults to the exception interface then: the
    # pins are found by the interface the port's iface= taps.
    del dpdk["dataplane"]["interface"]
    dpdk["dataplane"]["dpdk"]["exception_interface"] = "keelx0"
    # keeld --check-config says so first, in the start's words.
    checked = host.check_config(dpdk, "dpdk-check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"the XDP data plane of a previous keeld is pinned under {host.pin_dir}" in checked.stderr, \
        checked.stderr
    assert "a restart would refuse the file" in checked.stderr, checked.stderr
    k2 = host.start(dpdk, "dpdk", wait_ready=False)
    assert k2.proc.wait(timeout=30) == 1, k2.log()
    log = k2.log()
    assert "is not built into this keeld" not in log, log  # meson requires DPDK: never skipped
    assert f"the XDP data plane of a previous keeld is pinned under {host.pin_dir}" in log, log
    assert f"ip link set dev {lab.balancer.ifname} xdp off" in log, log
    assert lab.balancer_prog_id() == prog and host.pinned("prog"), "the refused keeld touched the XDP plane"
    wait_serving(lab, config)  # still forwarding, with the first keeld's state


def test_sd_notify_ready_reloading_stopping(lab, host):
    """keeld tells systemd (NOTIFY_SOCKET, Type=notify) READY=1 once
    programmed, RELOADING=1 then READY=1 around a SIGHUP reload, and
    STOPPING=1; each with a STATUS= line."""
    path = lab.tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(15)
    try:
        web, _ = configs(lab)
        config = lab.keel_config([web])
        # Not waiting for ready: READY=1 must arrive with "ready" already logged.
        k = host.start(config, "notify", args=("--detach-on-exit",),
                       env={"NOTIFY_SOCKET": str(path)}, wait_ready=False)

        def message():
            try:
                return sock.recv(4096).decode()
            except OSError as e:
                raise AssertionError(f"no sd_notify message: {e}\n{k.log()}") from e

        ready = message()
        assert "READY=1" in ready and "STATUS=" in ready, ready
        assert "event=ready" in k.log()  # READY=1 comes after programming
        k.reload(config)
        reloading, again = message(), message()
        assert "RELOADING=1" in reloading, reloading
        assert "READY=1" in again, again
        assert k.stop() == 0, k.log()
        assert "STOPPING=1" in message()
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def test_a_second_dpdk_keeld_on_the_port_is_refused_and_leaves_the_first_serving(lab, dpdk_host):
    """A second DPDK keeld on the port a running one drives, with another
    control socket and metrics port (EAL's own lock is off: the lab's
    eal_args have --no-shconf), is refused before EAL runs, by the port's
    lock in /run/keel/locks, naming the holder (live restart review:
    both ran, and every VIP packet reached the reals twice). The first
    serves on, its state files untouched."""
    web, _ = configs(lab)
    config = lab.keel_config([web])
    k1 = dpdk_host.start(config, "first")
    wait_serving(lab, config)
    state = dpdk_host.run(["cat", dpdk_host.state_path]).stdout
    other = copy.deepcopy(config)
    # Its socket, and so its state files, in another directory: the port's
    # lock is in /run/keel/locks whatever the socket says (re-read review:
    # beside the state files, it let such a keeld run beside the first).
    other["control"] = {"socket": "/run/keel/b/second.sock"}
    other["metrics"] = {"address": "127.0.0.1:9478"}
    k2 = dpdk_host.start(other, "second", wait_ready=False)
    assert k2.proc.wait(timeout=30) == 1, k2.log()
    log = k2.log()
    assert f"is run by another keeld (pid {k1.proc.pid})" in log, log
    assert "dpdk_port_started" not in log, log
    assert k1.proc.poll() is None
    wait_serving(lab, config)
    assert dpdk_host.run(["cat", dpdk_host.state_path]).stdout == state, "the runtime state was rewritten"
    k1.stop()


def test_dpdk_restart_keeps_checked_reals_up_and_flows_on_their_reals(lab, dpdk_host):
    # fall x interval = 30 s: how long after the stop the next keeld may
    # still trust it (DaemonBackend::start), far more than a start takes on
    # a loaded box; rise 3 would hold a fresh start 3 s without any real.
    web = lab.service("web", 4, PORT, "tcp", "ipip")
    web["health"] = {"type": "tcp", "port": EXTRA_PORT, "interval": "1000ms", "timeout": "200ms",
                     "rise": 3, "fall": 30}
    config = lab.keel_config([web])
    every_up = {r["address"]: "up" for r in web["reals"]}
    k1 = dpdk_host.start(config, "first")
    conns = []
    try:
        # Every real up first: a flow picked while some were still down
        # would sit on another real than the whole ring gives it.
        wait_states(k1, every_up)
        wait_serving(lab, config)
        before = connect_and_ask(lab, PORT, N_CONN, conns)
        assert len(set(before)) > 1, before  # the flows are spread, so a re-pick could move them
        assert k1.stop() == 0, k1.log()

        k2 = dpdk_host.start(config, "second")
        log = k2.log()
        # net_af_packet spreads flows itself (fanout): no RSS warning for it.
        assert "event=dpdk_no_rss" not in log, log
        # Its veth is all-multicast, not promiscuous (docs/dpdk.md), and
        # nothing warns of either.
        started = [ln for ln in log.splitlines() if "event=dpdk_port_started" in ln]
        assert started and "promiscuous=false allmulticast=true" in started[-1], log
        assert "dpdk_still_promiscuous" not in log and "dpdk_no_allmulticast" not in log, log
        flags = lab.balancer.run(["ip", "-o", "link", "show", "dev", lab.balancer.ifname]).stdout
        assert "ALLMULTI" in flags and "PROMISC" not in flags, flags
        assert log.count("event=health_kept_from_stop") == len(web["reals"]), log
        # Up at once, not after `rise` checks: the first ring is the whole one ...
        assert real_states(k2) == every_up
        # ... so each connection, its conntrack entry gone with the old
        # workers, is picked again onto the real it had.
        after = [ask(s) for s in conns]
        moved = [(i, before[i], after[i]) for i in range(N_CONN) if after[i] != before[i]]
        assert not moved, f"established flows changed real across the restart: {moved}"
        assert k2.stop() == 0, k2.log()
    finally:
        for s in conns:
            s.close()


def test_dpdk_port_takes_its_kernel_interfaces_smaller_mtu(lab, dpdk_host):
    """Without dataplane.dpdk.mtu, a net_af_packet port over a veth whose
    MTU is smaller than ethdev's 1500 (lowered by the operator, or left so by
    a keeld with mtu: that crashed) checks packets against the veth's MTU,
    with a warning: the kernel would drop a larger frame after keel counted
    it sent."""
    iface = lab.balancer.ifname
    config = lab.keel_config([lab.service("web", 4, PORT, "tcp", "ipip")])
    was = json.loads(lab.balancer.run(["ip", "-j", "link", "show", "dev", iface]).stdout)[0]["mtu"]
    assert was > 1400, was
    lab.balancer.run(["ip", "link", "set", "dev", iface, "mtu", "1400"])
    try:
        k = dpdk_host.start(config, "mtu")
        log = k.log()
        assert f"event=dpdk_kernel_mtu interface={iface} mtu=1400 port_mtu=" in log, log
        started = [ln for ln in log.splitlines() if "event=dpdk_port_started" in ln]
        assert started and " mtu=1400" in started[-1], log
        assert k.stop() == 0, k.log()
    finally:
        lab.balancer.run(["ip", "link", "set", "dev", iface, "mtu", str(was)], check=False)


def test_dpdk_restart_keeps_the_connection_tables(lab, dpdk_host):
    # A drain moves the ring's pick of the drained real's connections while
    # its table entries keep them there. Without the saved tables the next
    # keeld's ring would pick them again onto other reals (which answer a
    # segment of a connection they never saw with a reset).
    web = lab.service("web", 4, PORT, "tcp", "ipip")
    config = lab.keel_config([web])
    k1 = dpdk_host.start(config, "first")
    conns = []
    try:
        wait_serving(lab, config)
        before = connect_and_ask(lab, PORT, N_CONN, conns)
        drained = before[0]
        drained_addr = lab.real_by_name(drained).v4
        k1.keelctl("real", "drain", "web", drained_addr, "--reason", "conntrack restart test")
        fresh = served(lab.flows("tcp", lab.vip4, PORT, count=10))
        assert drained not in fresh, fresh  # the ring no longer picks it ...
        assert [ask(s) for s in conns] == before  # ... its connections stay (the table)
        assert k1.stop() == 0, k1.log()
        assert "event=conntrack_saved" in k1.log(), k1.log()
        # Kept under names keyed by the port's interface; a keeld from before
        # keyed names kept them as runtime-dpdk.json and conntrack-dpdk.bin,
        # which the next keeld takes over (renamed).
        legacy = {dpdk_host.state_path: "/run/keel/runtime-dpdk.json",
                  dpdk_host.conntrack_path: "/run/keel/conntrack-dpdk.bin"}
        for keyed, old in legacy.items():
            assert dpdk_host.exists(keyed), keyed
            dpdk_host.run(["mv", keyed, old])

        k2 = dpdk_host.start(config, "second")
        log = k2.log()
        for keyed, old in legacy.items():
            assert f"event=state_file_renamed from={old} to={keyed}" in log, log
            assert not dpdk_host.exists(old), old
        # (The tables' file is loaded and removed: conntrack_restored below.)
        assert dpdk_host.exists(dpdk_host.state_path)
        restored = re.search(r"event=conntrack_restored .*\bloaded=(\d+)", log)
        assert restored and int(restored.group(1)) >= N_CONN, log
        # The same workers on the same port: each entry back on its own
        # worker (the port's spread digest is stable from one keeld to the next).
        got = restored_fields(log)
        assert (got["copied_to_all_workers"], got["port_spread_changed"]) == ("false", "false"), got
        # ... into its own bucket: the tables take the saved hash seeds, so
        # none is lost for want of room.
        assert (got["seeds_restored"], got["lost_no_room"]) == ("true", "0"), got
        assert real_states(k2)[drained_addr] == "draining"  # the runtime drain, kept too
        after = [ask(s) for s in conns]
        moved = [(i, before[i], after[i]) for i in range(N_CONN) if after[i] != before[i]]
        assert not moved, f"established flows changed real across the restart: {moved}\n{log}"
        assert drained not in served(lab.flows("tcp", lab.vip4, PORT, count=10))
        assert k2.stop() == 0, k2.log()
    finally:
        for s in conns:
            s.close()


def with_workers(config, n):
    """config with its DPDK plane on the first n of its workers and as many
    port queues (net_af_packet qpairs)."""
    c = copy.deepcopy(config)
    d = c["dataplane"]["dpdk"]
    assert len(d["workers"]) >= n, d
    d["workers"] = d["workers"][:n]
    d["port"] = re.sub(r"qpairs=\d+", f"qpairs={n}", d["port"])
    return c


def restored_fields(log):
    """The key=value fields of the last conntrack_restored line of log."""
    lines = [ln for ln in log.splitlines() if "event=conntrack_restored " in ln]
    assert lines, log
    return dict(re.findall(r"(\w+)=(\S+)", lines[-1]))


def test_dpdk_restart_with_another_worker_count_keeps_the_connection_tables(lab, dpdk_host):
    # 1 worker, then 2, then 1 again: PACKET_FANOUT (standing in for RSS)
    # spreads the flows over another number of queues, so each next keeld
    # copies every saved entry into every worker's table; the connections
    # of the drained real stay on it whichever worker they now reach. The
    # third keeld's file holds each entry twice (both workers' copies).
    web = lab.service("web", 4, PORT, "tcp", "ipip")
    two = lab.keel_config([web])
    one = with_workers(two, 1)
    assert len(two["dataplane"]["dpdk"]["workers"]) == 2
    k = dpdk_host.start(one, "first")
    conns = []
    try:
        wait_serving(lab, one)
        before = connect_and_ask(lab, PORT, N_CONN, conns)
        drained = before[0]
        k.keelctl("real", "drain", "web", lab.real_by_name(drained).v4, "--reason", "worker count test")
        assert [ask(s) for s in conns] == before
        assert k.stop() == 0, k.log()
        for name, config, saved, workers in (("second", two, 1, 2), ("third", one, 2, 1)):
            k = dpdk_host.start(config, name)
            got = restored_fields(k.full_log())
            assert (got["saved_workers"], got["workers"], got["copied_to_all_workers"]) == \
                (str(saved), str(workers), "true"), got
            assert int(got["loaded"]) >= N_CONN and got["lost_no_room"] == "0", got
            if name == "third":
                assert int(got["skipped_duplicate"]) >= N_CONN, got
            after = [ask(s) for s in conns]
            moved = [(i, before[i], after[i]) for i in range(N_CONN) if after[i] != before[i]]
            assert not moved, f"{name}: established flows changed real: {moved}\n{k.log()}"
            if name == "second":  # the flows reached both workers, not only the first
                # Asked again (bounded) while one worker has none yet: a CI run
                # saw all 24 first asks on worker 1 ({0: 0, 1: 24}), which a
                # flow hash over 24 flows all but never gives, but AF_PACKET's
                # fanout rollover does while a worker's ring has not been
                # polled yet; each ask again must still reach the flow's real.
                for _ in range(20):
                    if all((lab.worker_packets() or {}).get(w, 0) > 0 for w in (0, 1)):
                        break
                    time.sleep(0.2)
                    assert [ask(s) for s in conns] == before, f"{name}: a flow changed real"
                assert all((lab.worker_packets() or {}).get(w, 0) > 0 for w in (0, 1)), lab.worker_packets()
            assert k.stop() == 0, k.log()
    finally:
        for s in conns:
            s.close()


def make_balancer_link_again(lab):
    """Deletes the balancer's interface and creates it again with the same
    name, MAC, addresses and routes (a new ifindex, no XDP program): what an
    orchestration agent or a driver reset does (review s31 F1). The bridge
    port facing it gets its XDP_PASS again (lab.py, XdpDataplane.prepare)."""
    b, sw = lab.balancer, lab.switch
    old = b.run(["cat", f"/sys/class/net/{b.ifname}/ifindex"]).stdout.strip()
    b.run(["ip", "link", "del", b.ifname])
    labmod.run(["ip", "link", "add", b.ifname, "netns", b.ns, "address", b.mac, "type", "veth",
                "peer", "name", lab.balancer_peer, "netns", sw.ns])
    sw.sh(f"""
        ethtool -K {lab.balancer_peer} tx off >/dev/null
        sysctl -qw net.ipv6.conf.{lab.balancer_peer}.disable_ipv6=1
        ip link set {lab.balancer_peer} mtu {lab.lan_mtu} master br0 up
    """)
    lab.plane.prepare(lab)
    b.sh(f"""
        ethtool -K {b.ifname} tx off >/dev/null
        ip link set {b.ifname} mtu {lab.lan_mtu} up
        ip addr add {b.v4}/24 dev {b.ifname}
        ip addr add {b.v6}/64 dev {b.ifname} nodad
        ip route add default via {lab.router.v4}
        ip -6 route add default via {lab.router.v6}
    """)
    new = b.run(["cat", f"/sys/class/net/{b.ifname}/ifindex"]).stdout.strip()
    # No program check here: keeld may have attached it again already (its
    # link watch sees the new interface as soon as it exists).
    assert new != old, (old, new)


def assert_lost_then_reattached(log: str):
    """keeld said the program was lost before it said it attached it again:
    dataplane_interface_missing if its upkeep ran while no interface had
    the name (at the deletion's link message), dataplane_detached if the
    new interface was there already."""
    lost = [log.find(f"event={e}") for e in ("dataplane_interface_missing", "dataplane_detached")]
    lost = [at for at in lost if at >= 0]
    assert lost and min(lost) < log.index("event=dataplane_reattached"), log


def relink_and_wait_reattached(lab, k, config):
    """The balancer's interface deleted and made again under keeld `k`:
    waits (bounded) for its dataplane_reattached, after the loss was logged,
    then for the program and the VIPs to serve again."""
    mark = len(k.full_log())
    make_balancer_link_again(lab)
    k.wait_logged("dataplane_reattached", timeout=15, after=mark)
    assert_lost_then_reattached(k.full_log()[mark:])
    assert lab.balancer_prog_id() is not None
    wait_serving(lab, config)


def test_interface_made_again_and_pins_removed_are_put_back_without_moving_a_flow(lab, host):
    """The balancer's interface deleted and created again under a running
    keeld: it attaches the program again (logged), VIP
    traffic flows again and established connections keep their reals. Its
    pins removed: pinned again, at the latest by the stop that leaves the
    plane in place, whose line says so, and the next keeld adopts (review
    s31 F1, F2, F6)."""
    web = lab.service("web", 4, PORT, "tcp", "ipip")
    config = lab.keel_config([web])
    k = host.start(config, "first")
    conns = []
    try:
        wait_serving(lab, config)
        before = connect_and_ask(lab, PORT, N_CONN, conns)
        relink_and_wait_reattached(lab, k, config)
        served(lab.flows("tcp", lab.vip4, PORT, count=5))
        after = [ask(s) for s in conns]
        assert after == before, k.log()
        metrics = lab.balancer.run(["curl", "-sS", "--fail", "--max-time", "10",
                                    "http://127.0.0.1:9477/metrics"], timeout=15).stdout
        for line in ("keel_dataplane_attached 1", "keel_dataplane_reattach_total 1"):
            assert re.search(f"^{line}$", metrics, re.M), metrics
        stats = k.keelctl("stats").stdout
        assert (f"xdp program: on {lab.balancer.ifname} (native), attached; since keeld started: reattached 1 time\n"
                in stats), stats

        # Pins removed, then at once a stop that leaves the plane forwarding.
        host.run(["rm", "-r", host.pin_dir])
        assert not host.pinned()
        assert k.stop() == 0, k.log()
        log = k.log_path.read_text(errors="replace")  # full_log() needs the log open
        assert "event=dataplane_pins_restored" in log, log
        stop = next(line for line in log.splitlines() if "event=stopped_left_in_place" in line)
        assert "program=attached" in stop and "pins_state=present" in stop and "reattached=1" in stop, stop
        assert host.pinned("prog") and host.pinned("conntrack")

        k = host.start(config, "second")
        log = k.log()
        assert "event=dataplane_adopted" in log and "program=kept" in log, log
        assert [ask(s) for s in conns] == before, k.log()

        # bpffs itself unmounted (umount -l: keeld holds the lock): mounted
        # again and the plane pinned there (live restart review: keeld only
        # said "create DIR: No such file or directory", stopped with
        # pins_state=missing, and the next keeld could not adopt).
        host.run(["umount", "-l", "/sys/fs/bpf"])
        assert not host.pinned()
        assert k.stop() == 0, k.log()
        log = k.log_path.read_text(errors="replace")
        stop = next(line for line in log.splitlines() if "event=stopped_left_in_place" in line)
        assert "pins_state=present" in stop, log
        assert host.run(["mountpoint", "-q", "/sys/fs/bpf"], check=False).returncode == 0
        # Mounted 0700, not world-writable (security review).
        assert int(host.run(["stat", "-c", "%a", "/sys/fs/bpf"]).stdout, 8) & 0o777 == 0o700
        k = host.start(config, "third")
        log = k.log()
        assert "event=dataplane_adopted" in log and "program=kept" in log, log
        assert [ask(s) for s in conns] == before, k.log()
        assert k.stop() == 0, k.log()
    finally:
        for s in conns:
            s.close()


def test_link_messages_run_the_upkeep_without_its_timer(lab, host):
    """keeld's link watch (netlink RTNLGRP_LINK): with the upkeep timer set
    to an hour (dataplane.upkeep_interval), so that only a link message can
    make keeld look, the balancer's interface deleted and created again gets
    the program back and serves, and an MTU lowered under an IPv6 ipip
    service is warned about and its return said."""
    web = lab.service("web", 4, PORT, "tcp", "ipip")
    web6 = lab.service("web6", 6, PORT, "tcp", "ipip")
    config = lab.keel_config([web, web6])
    config["dataplane"]["upkeep_interval"] = "1h"
    k = host.start(config, "linkwatch")
    b = lab.balancer
    try:
        wait_serving(lab, config)
        relink_and_wait_reattached(lab, k, config)

        mark = len(k.full_log())
        b.run(["ip", "link", "set", "dev", b.ifname, "mtu", "1300"])
        k.wait_logged("mtu_too_small_for_ipv6", timeout=15, after=mark)
        mark = len(k.full_log())
        b.run(["ip", "link", "set", "dev", b.ifname, "mtu", str(lab.lan_mtu)])
        k.wait_logged("mtu_ok_for_ipv6", timeout=15, after=mark)
        assert k.stop() == 0, k.log()
    finally:
        b.run(["ip", "link", "set", "dev", b.ifname, "mtu", str(lab.lan_mtu)], check=False)
        k.stop()
