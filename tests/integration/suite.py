# SPDX-License-Identifier: Apache-2.0
"""Helpers the keel test modules share: start keeld for a test, wait until it
serves, and tally flows. (Lab mechanics live in lab.py.)"""
import json
import socket
import time
from collections import Counter

import pytest

# The health check of the suites that watch health (test_health, test_metrics):
# TCP connects to :8080 (every lab server listens there) every 200ms.
HEALTH_INTERVAL_S = 0.2
HEALTH_FALL = HEALTH_RISE = 2
# fall/rise * interval, plus first-check jitter, probe timeout and a loaded CI box.
STATE_WAIT_S = (max(HEALTH_FALL, HEALTH_RISE) + 1) * HEALTH_INTERVAL_S + 10


def wait_serving(lab, config, attempts=20):
    """keeld attaches first and fills its maps after (or the reverse); either
    way the first flows may race it. Probe every service until one exchange
    succeeds, bounded in attempts (each bounded by its timeout)."""
    for svc in config["services"]:
        for _ in range(attempts):
            got = lab.flows(svc["protocol"], svc["vip"], svc["port"], count=1, timeout=0.5)
            if "real" in got[0]:
                break
        else:
            pytest.fail(f"keel never served {svc['name']}: {svc['protocol']} "
                        f"{svc['vip']}:{svc['port']} (last: {got[0].get('error')})")


def run_keel(request, lab, config, with_handle=False):
    """Generator body of the keel fixtures: decap on the reals iff some
    service uses ipip, keeld with CONFIG until every service answers; yields
    (lab, config), or (lab, config, keeld handle) with_handle; on a failed
    test prints keeld's log and verdict counters.
    l2dsr-only configs run without keel-decap, so an encapsulated packet
    could not be accepted and success proves the MAC-rewrite path."""
    if any(svc["forwarding"] == "ipip" for svc in config["services"]):
        lab.decap_attach()
    else:
        lab.decap_detach()
    with lab.keeld(config) as k:
        def diagnose():
            print(f"---- keeld config {k.config_path}, log:\n{k.log()}")
            print(f"---- verdict counters: {lab.reasons(strict=False)}")
            if lab._decap:
                print(f"---- keel-decap: {lab.decap_status()}")
        try:
            wait_serving(lab, config)
        except BaseException:
            diagnose()
            raise
        yield (lab, config, k) if with_handle else (lab, config)
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            diagnose()
    lab.decap_detach()


def checked_service(lab, name="web", port=80):
    """An IPv4 ipip TCP service over every lab real, with the suite's check."""
    svc = lab.service(name, 4, port, "tcp", "ipip")
    # A real fails by a refused connect (its server stopped), never by the
    # timeout: 1 s keeps two slow answers on a loaded box from taking a
    # serving real down between reads the tests make once.
    svc["health"] = {"type": "tcp", "port": 8080, "interval": f"{int(HEALTH_INTERVAL_S * 1000)}ms",
                     "timeout": "1s", "rise": HEALTH_RISE, "fall": HEALTH_FALL}
    return svc


def show_service(keeld, name="web") -> dict:
    out = json.loads(keeld.keelctl("-o", "json", "service", "show", name).stdout)
    return out.get("service", out)


def real_states(keeld, name="web") -> dict:
    """{real address: up|down|draining} as keelctl shows them."""
    return {r["address"]: r["state"] for r in show_service(keeld, name)["reals"]}


def wait_states(keeld, want: dict, name="web", timeout: float = STATE_WAIT_S):
    """Waits, bounded, until every real in WANT has its state."""
    deadline = time.monotonic() + timeout
    got = {}
    while time.monotonic() < deadline:
        got = real_states(keeld, name)
        if all(got.get(a) == s for a, s in want.items()):
            return
        time.sleep(0.1)
    pytest.fail(f"real states {got}, wanted {want} within {timeout}s\n{keeld.log()}")


def run_checked_keel(request, lab, config):
    """Generator body of the fixtures of health-checked services: run_keel
    with the keeld handle, yielded once every real of every service is up by
    its checks; afterwards restarts every lab server a test stopped."""
    gen = run_keel(request, lab, config, with_handle=True)
    lab_, config, keeld = next(gen)
    try:
        for svc in config["services"]:
            wait_states(keeld, {r["address"]: "up" for r in svc["reals"]}, svc["name"])
        yield lab_, config, keeld
    finally:
        for real in lab.reals:
            lab.restart_server(real)
        for _ in gen:
            pass


def served(flows):
    failed = [f for f in flows if "real" not in f]
    assert not failed, f"{len(failed)} of {len(flows)} flows failed, e.g. {failed[:3]}"
    return Counter(f["real"] for f in flows)


def connect_and_ask(lab, port, n, conns, family=4):
    """Opens n TCP connections from the client to the VIP of FAMILY (4 or 6)
    on port, adding each to conns (the caller closes them, even on failure),
    and returns what each answered to one request: every one must be served
    by a real."""
    fam = socket.AF_INET if family == 4 else socket.AF_INET6
    for _ in range(n):
        s = lab.client.socket(fam, socket.SOCK_STREAM)
        conns.append(s)
        s.settimeout(3)
        s.connect((lab.vip(family), port))
    answers = [ask(s) for s in conns[-n:]]
    assert all(a.startswith("real") for a in answers), answers
    return answers


def ask(sock):
    """One request on an open connection; the real's name, or the error."""
    try:
        sock.sendall(b"again\n")
        data = sock.recv(2048)
        return data.decode().strip() if data else "EOF"
    except OSError as e:
        return type(e).__name__
