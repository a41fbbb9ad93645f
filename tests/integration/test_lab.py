# SPDX-License-Identifier: Apache-2.0
"""The lab checks itself, without keel: addressing, routing, the reals'
servers, the DSR return path (VIP on lo, replies via the router) and that a
trivial XDP_PASS on the balancer's veth changes nothing. If these fail, the
keel tests' failures say nothing about keel."""
import os

import lab as labmod


def test_lab_self_check(lab):
    labmod.self_check(lab)


def test_lab_names_are_per_run(lab):
    """Every namespace carries this run's prefix, which names the process,
    so parallel runs and other engineers' labs never collide; and no lab
    link is left in the host's namespace (each was moved into its own)."""
    assert lab.prefix == f"kl{os.getpid()}", lab.prefix
    for h in [lab.switch, *lab.hosts]:
        assert h.ns.startswith(lab.prefix + "-")
    for port in [lab.balancer_peer, "p-rt", *(f"p-{r.role}" for r in lab.reals)]:
        shown = labmod.run(["ip", "link", "show", "dev", port], check=False)
        assert shown.returncode != 0, f"lab link {port} in the host's namespace: {shown.stdout}"
        assert lab.switch.run(["ip", "link", "show", "dev", port], check=False).returncode == 0, port
