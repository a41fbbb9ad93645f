# SPDX-License-Identifier: Apache-2.0
"""Helpers the keel test modules share: start keeld for a test, wait until it
serves, and tally flows. (Lab mechanics live in lab.py.)"""
from collections import Counter

import pytest


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
            print(f"---- verdict counters: {lab.reasons()}")
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


def served(flows):
    failed = [f for f in flows if "real" not in f]
    assert not failed, f"{len(failed)} of {len(flows)} flows failed, e.g. {failed[:3]}"
    return Counter(f["real"] for f in flows)


def ask(sock):
    """One request on an open connection; the real's name, or the error."""
    try:
        sock.sendall(b"again\n")
        data = sock.recv(2048)
        return data.decode().strip() if data else "EOF"
    except OSError as e:
        return type(e).__name__
