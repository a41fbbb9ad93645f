# SPDX-License-Identifier: Apache-2.0
"""pytest wiring for keel's live integration suite.

Options:
  --keel-build DIR     meson build dir holding keeld, keel-decap, bpf/*.bpf.o
  --dataplane LIST     comma-separated data-plane kinds (keys of lab.DATAPLANES)

Every test that takes `lab` runs once per data plane: `dataplane_kind` is a
module-scoped parameter, so one lab per (module, data plane) is built and torn
down, and each test starts its own keeld inside it.
"""
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab as labmod  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--keel-build", default=str(Path(__file__).resolve().parents[2] / "build"),
                     help="meson build dir with keeld, keel-decap and bpf objects")
    parser.addoption("--dataplane", default="xdp",
                     help=f"comma-separated data planes to run against ({', '.join(labmod.DATAPLANES)})")


def pytest_configure(config):
    # meson (and CI) stop a test with SIGTERM on timeout: turn it into an
    # exception so fixture finalizers tear the namespaces down.
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)


def pytest_generate_tests(metafunc):
    if "dataplane_kind" in metafunc.fixturenames:
        kinds = [k.strip() for k in metafunc.config.getoption("--dataplane").split(",") if k.strip()]
        unknown = [k for k in kinds if k not in labmod.DATAPLANES]
        if unknown:
            raise pytest.UsageError(f"--dataplane: unknown {unknown}; known: {sorted(labmod.DATAPLANES)}")
        metafunc.parametrize("dataplane_kind", kinds, scope="module")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Fixtures read item.rep_call in teardown to dump diagnostics on failure.
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def keel_build(request) -> Path:
    build = Path(request.config.getoption("--keel-build")).resolve()
    if not (build / "build.ninja").exists():
        pytest.exit(f"--keel-build {build}: not a meson build dir", returncode=2)
    return build


@pytest.fixture(scope="session")
def root():
    if os.geteuid() != 0:
        pytest.skip("needs root (netns, veth, XDP)")


@pytest.fixture(scope="module")
def lab(root, keel_build, dataplane_kind):
    lb = labmod.Lab(keel_build, dataplane_kind)
    try:
        lb.up()
        lb.start_servers(tcp_ports=(80, 8080), udp_ports=(80, 8080))
        yield lb
    finally:
        lb.down()


@pytest.fixture
def need_keel(keel_build):
    """The keel binaries this suite drives; a missing one is a build problem."""
    missing = [n for n in ("keeld", "keel-decap")
               if not (keel_build / labmod.Lab.BINARIES[n]).exists()]
    if missing:
        pytest.fail(f"not built in {keel_build}: {', '.join(missing)}")


def keeld_host(lab):
    """Generator body of the host fixtures: a KeeldHost (lab.py), a mount
    namespace whose bpffs and /run/keel outlive each keeld started in it;
    ipip reals decapsulate with keel-decap."""
    lab.plane.reset(lab)
    lab.decap_attach()
    h = labmod.KeeldHost(lab)
    yield h
    h.close()
    lab.plane.reset(lab)
    lab.decap_detach()


@pytest.fixture
def host(lab, need_keel):
    """keeld_host for restart and adoption tests. XDP only: the DPDK plane
    pins nothing to adopt."""
    if lab.dataplane != "xdp":
        pytest.skip("adoption of pinned maps is the XDP data plane's")
    yield from keeld_host(lab)


@pytest.fixture
def dpdk_host(lab, need_keel):
    """keeld_host for the DPDK plane's restarts (nothing adopted: the state
    file in /run/keel carries what the next keeld needs)."""
    if lab.dataplane != "dpdk":
        pytest.skip("an XDP restart adopts the pinned data plane (the host tests)")
    yield from keeld_host(lab)
