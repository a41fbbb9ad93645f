# SPDX-License-Identifier: Apache-2.0
"""Connection consistency across ring changes (keeld reload, SIGHUP), with
TCP connections held open from the client namespace:
  - a weight change moves flows in the ring, but established connections stay
    on their real (connection table) while new ones follow the new ring;
  - removing a real bumps its generation: its established flows are re-picked
    (and the new real resets them), the others are untouched.
The include/keel/maps_abi.h identity rules are what these check."""
import pytest

from suite import ask, connect_and_ask, run_keel, served

PORT = 80
N_CONN = 30
FAMILIES = [pytest.param(4, id="v4"), pytest.param(6, id="v6")]


def web(lab, family, forwarding, weights=None, drop=None):
    svc = lab.service("web", family, PORT, "tcp", forwarding, weights=weights)
    if drop is not None:
        svc["reals"] = [r for r in svc["reals"]
                        if r["address"] not in (drop.v4, drop.v6)]
    return svc


@pytest.fixture(params=["ipip", "l2dsr"])
def forwarding(request):
    return request.param


@pytest.fixture
def keel_web(request, lab, need_keel, forwarding, family):
    yield from run_keel(request, lab, lab.keel_config([web(lab, family, forwarding)]),
                        with_handle=True)


def as_flows(lab, family, conns):
    return [{"src": s.getsockname()[0], "sport": s.getsockname()[1], "dst": lab.vip(family),
             "dport": PORT, "proto": "tcp"} for s in conns]


@pytest.mark.parametrize("family", FAMILIES)
def test_weight_change_keeps_established(keel_web, forwarding, family):
    lab, config, keeld = keel_web
    conns = []
    try:
        before = connect_and_ask(lab, PORT, N_CONN, conns, family)
        new = lab.keel_config([web(lab, family, forwarding, weights=[100, 100, 1000])])
        new_svc = new["services"][0]
        moved = [i for i, p in enumerate(lab.model_pick(new_svc, as_flows(lab, family, conns)))
                 if p != before[i]]
        # Without flows the new ring would move, this test would prove nothing.
        assert moved, "no open flow maps elsewhere in the new ring; pick other weights"
        keeld.reload(new)
        after = [ask(s) for s in conns]
        changed = [(i, before[i], after[i]) for i in range(N_CONN) if after[i] != before[i]]
        assert not changed, f"{len(changed)} established flows changed real " \
                            f"({len(moved)} would in the new ring): {changed[:5]}"
        fresh = lab.flows("tcp", lab.vip(family), PORT, count=N_CONN)
        served(fresh)
        predicted = lab.model_pick(new_svc, fresh)
        wrong = [(f["sport"], f["real"], p) for f, p in zip(fresh, predicted) if f["real"] != p]
        assert not wrong, f"new flows do not follow the new ring: {wrong[:5]}"
        print(f"{forwarding} v{family}: {len(moved)}/{N_CONN} open flows stayed despite the new ring")
    finally:
        for s in conns:
            s.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_removed_real_loses_its_flows(keel_web, forwarding, family):
    lab, config, keeld = keel_web
    conns = []
    try:
        before = connect_and_ask(lab, PORT, N_CONN, conns, family)
        gone = lab.real_by_name(before[0])
        keeld.reload(lab.keel_config([web(lab, family, forwarding, drop=gone)]))
        after = [ask(s) for s in conns]
        for b, a in zip(before, after):
            if b == gone.role:
                # Re-picked to a real that never saw the handshake: it
                # resets the connection (or the reply never comes).
                assert not a.startswith("real"), f"flow on removed {b} still answered by {a}"
            else:
                assert a == b, f"flow on {b} moved to {a} when {gone.role} was removed"
        fresh = served(lab.flows("tcp", lab.vip(family), PORT, count=N_CONN))
        assert gone.role not in fresh, f"new flows still reach removed {gone.role}: {fresh}"
    finally:
        for s in conns:
            s.close()
