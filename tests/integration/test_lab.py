# SPDX-License-Identifier: Apache-2.0
"""The lab checks itself, without keel: addressing, routing, the reals'
servers, the DSR return path (VIP on lo, replies via the router) and that a
trivial XDP_PASS on the balancer's veth changes nothing. If these fail, the
keel tests' failures say nothing about keel."""
import lab as labmod


def test_lab_self_check(lab):
    labmod.self_check(lab)


def test_lab_names_are_per_run(lab):
    """Every namespace carries this run's prefix, so parallel runs and other
    engineers' labs never collide."""
    for h in [lab.switch, *lab.hosts]:
        assert h.ns.startswith(lab.prefix + "-")
