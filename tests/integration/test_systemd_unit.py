# SPDX-License-Identifier: Apache-2.0
"""deploy/keeld.service under a real systemd (Debian's /lib/systemd/systemd)
booted as PID 1 of a private container, the unit installed as `meson install`
would (the build's keeld and keelctl copied to /usr/local/sbin and
/usr/local/bin of the container); with no drop-in on the XDP plane:
  - `systemctl start` returns once keeld said READY=1 (Type=notify): the
    service is active/running, its status line says it attached, keeld
    pinned under /sys/fs/bpf/keel/IFACE and keelctl answers on
    /run/keel/keel.sock;
  - keeld runs with exactly the unit's capabilities (CapEff), no_new_privs,
    a seccomp filter, and /, /proc/sys and /sys read-only but /sys/fs/bpf
    and /run/keel writable (ProtectSystem=strict, ReadOnlyPaths=,
    ReadWritePaths=, RuntimeDirectory=);
  - `systemctl reload` applies a changed file (a service added) and fails on
    a broken one, keeld still running with the last good state;
  - `systemctl restart` is hitless: the new keeld adopts the program
    (dataplane_adopted program=kept in the journal, same program id on the
    interface);
  - `systemctl stop` leaves the program attached and its pins and /run/keel
    in place (RuntimeDirectoryPreserve=yes) for the next keeld;
  - a keeld killed with SIGKILL is restarted by systemd (Restart=on-failure)
    and adopts the program, which stayed attached through the gap;
  - a broken file at start (keeld exits 1) is retried until the unit's start
    limit, after which it stays failed.
With --dataplane dpdk, the unit plus its drop-in keeld-dpdk.conf on a
net_af_packet port: start, the two files' capabilities, EAL's /run/dpdk,
keelctl, stop. (It found that systemd hands keeld
RUNTIME_DIRECTORY=/run/dpdk:/run/keel for the two files' RuntimeDirectory=
lines, which EAL took as one path and refused: the drop-in now unsets it.)

The container (SystemdContainer) is `unshare --pid --mount --net --uts --ipc
--cgroup` of a cgroup2 directory of its own, whose root is an overlay of the
host's / with its upper layer on a tmpfs (nothing is written to the host),
with a fresh proc (/proc/sys read-only, /proc/sys/net writable, as
systemd-nspawn does: else systemd raises the host's fs.nr_open), sysfs,
cgroup2, an empty bpffs of its own (never the host's), a minimal /dev and
tmpfs /run and /tmp. systemd boots into a probe.target without default
dependencies, with the units that would touch the host's kernel settings or
devices masked, and is driven by systemctl over its private socket (no
D-Bus). keeld's interface is one end of a veth pair inside the container's
network namespace; its real is down (no one listens), which the unit does
not care about. Everything dies with the container's PID 1.

The unit's LimitNOFILE=524288 is above this sandbox's hard limit where the
tests run without CAP_SYS_RESOURCE: systemd then sets the closest limit it
can (keeld logs open_file_limit as a warning) and starts keeld anyway, so no
drop-in is needed. Skips where systemd cannot boot that way (no cgroup2, no
root, no systemd); each test runs on its data plane only."""
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import lab as labmod
from test_privileges import cap_field, cap_mask, mount_options, unit_caps

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "keeld.service.in"
DPDK_DROPIN = UNIT.parent / "keeld-dpdk.conf"
SYSTEMD = "/lib/systemd/systemd"
IFACE, PEER = "kv0", "kv1"
ADDR = "10.99.0.1"
SOCKET = "/run/keel/keel.sock"

# Units whose start would change the host's kernel (sysctls, modules,
# binfmt) or wait for devices that a container has not; systemd-nspawn
# masks most of these too.
MASKED = ["systemd-sysctl.service", "systemd-modules-load.service",
          "proc-sys-fs-binfmt_misc.automount", "systemd-binfmt.service",
          "systemd-udevd.service", "systemd-udev-trigger.service",
          "systemd-udev-settle.service", "systemd-udevd-control.socket",
          "systemd-udevd-kernel.socket", "systemd-timesyncd.service",
          "systemd-pstore.service", "dpdk.service"]

# PID 1 of the container before systemd: the new root, then exec systemd.
# $1: this directory (tmpfs for the overlay's upper layer mounted on its t/),
# $2: the keel build dir (bound read-only at the same path, in case it is on
# a mount the overlay of / does not show), $3: the units to mask.
INIT_SH = r"""#!/bin/sh
set -eu
D=$1 BUILD=$2 MASKED=$3
mount -t tmpfs -o mode=0700 tmpfs "$D/t"
mkdir "$D/t/upper" "$D/t/work" "$D/t/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$D/t/upper,workdir=$D/t/work" "$D/t/root"
R=$D/t/root
mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount --bind "$R/proc/sys/net" "$R/proc/sys/net"
mount -o remount,bind,ro "$R/proc/sys"
mount -t sysfs sysfs "$R/sys"
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount -t bpf -o mode=0700 bpf "$R/sys/fs/bpf"
mount -t tmpfs -o mode=0755 tmpfs "$R/dev"
for n in null zero full random urandom tty; do
    touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"
done
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
mkdir -p "$R$BUILD"
mount --bind "$BUILD" "$R$BUILD"
mount -o remount,bind,ro "$R$BUILD"
# The boot target and the masks: in place before systemd reads its units.
U=$R/etc/systemd/system
mkdir -p "$U"
printf '[Unit]\nDescription=keel test boot target\nDefaultDependencies=no\n' > "$U/probe.target"
for u in $MASKED; do ln -sf /dev/null "$U/$u"; done
mkdir -p "$R/oldroot"
cd "$R"
pivot_root . oldroot
umount -l /oldroot
rmdir /oldroot
export container=keel-test
exec /lib/systemd/systemd --system --unit=probe.target
"""


class ContainerUnavailable(Exception):
    """systemd could not be booted here: the test skips with this reason."""


def cgroup2_root() -> Path | None:
    """Where the host's cgroup2 hierarchy is mounted: /sys/fs/cgroup/unified
    (hybrid layout) or /sys/fs/cgroup (unified)."""
    mounts = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, target, fstype = line.split()[:3]
        mounts[target] = fstype
    for p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if mounts.get(p) == "cgroup2":
            return Path(p)
    return None


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_for(what: str, probe, timeout: float, interval: float = 0.2):
    """Polls PROBE until it returns something true, for at most TIMEOUT s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s")
        time.sleep(interval)


class SystemdContainer:
    """systemd as PID 1 of private namespaces (the module docstring), in a
    cgroup2 directory of its own. close() kills it and removes the cgroup
    and the temporary directory; its namespaces, mounts, bpffs and veths
    die with its processes."""
    serial = itertools.count()  # names unique among the containers of a run

    def __init__(self, build: Path):
        self.build = build
        self.name = f"ksd{os.getpid()}-{next(SystemdContainer.serial)}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.cgroup: Path | None = None
        self.launcher: subprocess.Popen | None = None
        self.pid1 = 0  # the host's pid of the container's PID 1
        self.log = self.tmp / "console.log"

    def boot(self, timeout: float = 30) -> None:
        root = cgroup2_root()
        if root is None:
            raise ContainerUnavailable("no cgroup2 hierarchy to give systemd")
        for tool in ("unshare", "nsenter", "pivot_root"):
            if not shutil.which(tool):
                raise ContainerUnavailable(f"{tool} not installed")
        self.cgroup = root / self.name
        try:
            self.cgroup.mkdir()
        except OSError as e:
            raise ContainerUnavailable(f"cannot make cgroup {self.cgroup}: {e}") from e
        (self.tmp / "t").mkdir()
        init = self.tmp / "init.sh"
        init.write_text(INIT_SH)
        init.chmod(0o700)
        # Into the cgroup before unshare: the container's cgroup namespace
        # is rooted where its first process is.
        launch = ('echo $$ > "$0" && exec unshare --pid --fork --mount --net --uts --ipc '
                  '--cgroup --propagation private "$@"')
        with open(self.log, "wb") as log:
            self.launcher = subprocess.Popen(
                ["sh", "-c", launch, str(self.cgroup / "cgroup.procs"), str(init), str(self.tmp),
                 str(self.build), " ".join(MASKED)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

        def systemd_pid():
            if self.launcher.poll() is not None:
                raise ContainerUnavailable(f"the container's init exited ({self.launcher.returncode}): "
                                           f"{self.log.read_text(errors='replace')[-2000:]}")
            for c in children(self.launcher.pid):
                self.pid1 = c
                with contextlib.suppress(OSError), open(f"/proc/{c}/comm") as f:
                    if f.read().strip() == "systemd":
                        return c
            return None

        def running():
            p = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            state = p.stdout.strip()
            if state in ("running", "degraded"):
                return state
            if state == "maintenance":  # booted into rescue or emergency
                raise ContainerUnavailable(f"systemd in {state} mode")
            return None

        try:
            wait_for("systemd exec'd as the container's PID 1", systemd_pid, timeout)
            wait_for("systemd booted", running, timeout)
        except TimeoutError as e:
            raise ContainerUnavailable(f"{e}: {self.log.read_text(errors='replace')[-2000:]}") from e

    def argv(self, cmd: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid1), "-a", *cmd]

    def run(self, cmd: list[str], check: bool = True, timeout: float = 60):
        """CMD in every namespace of the container (its root, its PIDs)."""
        return labmod.run(self.argv(cmd), check=check, timeout=timeout)

    def path(self, path: str) -> Path:
        """PATH of the container's file system, seen from the host."""
        return Path(f"/proc/{self.pid1}/root") / path.lstrip("/")

    def write(self, path: str, text: str) -> None:
        p = self.path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def close(self) -> None:
        # SIGKILL of a PID namespace's init kills every process in it; then
        # unshare, its parent, reaps it and exits (killed if it does not).
        if self.pid1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
        if self.launcher:
            try:
                self.launcher.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.launcher.kill()
                self.launcher.wait(timeout=10)
        if self.cgroup and self.cgroup.exists():
            def empty():
                return "populated 0" in (self.cgroup / "cgroup.events").read_text()
            try:
                wait_for(f"{self.cgroup} empty", empty, 10)
            except TimeoutError:
                pass
            for d, _, _ in sorted(os.walk(self.cgroup), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def systemd_container(request, keel_build: Path, plane: str):
    """Generator body of the container fixtures: a booted SystemdContainer
    for the tests of data plane PLANE (skipped unless --dataplane lists it),
    closed whatever the test did; on a failure keeld's status and journal
    are printed first."""
    kinds = [k.strip() for k in request.config.getoption("--dataplane").split(",")]
    if plane not in kinds:
        pytest.skip(f"keeld.service under systemd with the {plane} data plane: --dataplane {plane}")
    if not os.access(SYSTEMD, os.X_OK):
        pytest.skip(f"{SYSTEMD} not installed")
    missing = [n for n in ("keeld", "keelctl") if not (keel_build / labmod.Lab.BINARIES[n]).exists()]
    if missing:
        pytest.fail(f"not built in {keel_build}: {', '.join(missing)}")
    c = SystemdContainer(keel_build)
    try:
        try:
            c.boot()
        except ContainerUnavailable as e:
            pytest.skip(f"cannot boot systemd in a container here: {e}")
        yield c
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for cmd in (["systemctl", "status", "--no-pager", "-l", "keeld"],
                        ["journalctl", "--no-pager", "-o", "cat", "-u", "keeld"]):
                p = c.run(cmd, check=False, timeout=20)
                print(f"--- {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    finally:
        c.close()


@pytest.fixture
def container(request, root, keel_build):
    """A container for keeld.service as shipped (XDP plane)."""
    yield from systemd_container(request, keel_build, "xdp")


@pytest.fixture
def dpdk_container(request, root, keel_build):
    """A container for keeld.service with keeld-dpdk.conf (DPDK plane)."""
    yield from systemd_container(request, keel_build, "dpdk")


def dataplane(plane: str, prefix: str) -> dict:
    """keel.yaml's dataplane section for PLANE on IFACE. DPDK: the lab's
    net_af_packet port (lab.DpdkDataplane: no hugepages, no PCI, two workers
    that sleep when idle) but, as on a DPDK node (docs/dpdk.md), with EAL's
    runtime files under /run/dpdk/PREFIX (shconf): the directory the
    drop-in makes is then used. No exception interface: a net_af_packet
    port leaves the kernel its frames (config.cc warns against one)."""
    if plane == "xdp":
        return {"kind": "xdp", "interface": IFACE, "xdp_mode": "native"}
    return labmod.DpdkDataplane.config_for(IFACE, prefix, shconf=True)


def keel_yaml(services: list[str], plane: str = "xdp", prefix: str = "keel") -> str:
    config = {
        "dataplane": dataplane(plane, prefix),
        "node": {"tunnel_source_v4": ADDR, "next_hop_mac": "02:00:00:00:00:01"},
        "services": [{"name": name, "vip": f"192.0.2.{10 + i}", "port": 80, "protocol": "tcp",
                      "forwarding": "ipip",
                      "health": {"type": "tcp", "interval": "1s", "timeout": "1s"},
                      "reals": [{"address": "10.99.0.2", "weight": 100}]}
                     for i, name in enumerate(services)],
    }
    return labmod.to_yaml(config) + "\n"


# Where KeeldUnit installs the build's keeld and keelctl in the container:
# outside /tmp, which the unit's PrivateTmp=yes hides from keeld (a build
# dir under /tmp, as a CI clone may be, would fail the start with
# 203/EXEC).
SBINDIR, BINDIR = "/usr/local/sbin", "/usr/local/bin"


class KeeldUnit:
    """keeld.service installed in container C as `meson install` would:
    the build's keeld and keelctl copied to SBINDIR and BINDIR (the overlay
    root takes them), @SBINDIR@ and @BINDIR@ pointing there, with DROPINS (name ->
    file) under keeld.service.d and CONFIG as /etc/keel/keel.yaml; IFACE
    up, journald started, systemd's units reloaded. Not started."""

    def __init__(self, c: SystemdContainer, config: str, dropins: dict[str, Path] | None = None):
        self.c = c
        build = c.build
        for name, where in (("keeld", SBINDIR), ("keelctl", BINDIR)):
            dest = c.path(f"{where}/{name}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(build / labmod.Lab.BINARIES[name], dest)
        self.keelctl = f"{BINDIR}/keelctl"
        unit = (UNIT.read_text().replace("@SBINDIR@", SBINDIR)
                .replace("@BINDIR@", BINDIR).replace("@DOCDIR@", "/usr/share/doc/keel"))
        c.write("/etc/systemd/system/keeld.service", unit)
        for name, path in (dropins or {}).items():
            c.write(f"/etc/systemd/system/keeld.service.d/{name}", path.read_text())
        c.write("/etc/keel/keel.yaml", config)
        c.run(["sh", "-ec", f"ip link set lo up; ip link add {IFACE} type veth peer name {PEER}; "
                            f"ip addr add {ADDR}/24 dev {IFACE}; ip link set {IFACE} up; "
                            f"ip link set {PEER} up"])
        # keeld's output goes to the journal (StandardOutput's default).
        c.run(["systemctl", "start", "systemd-journald.socket", "systemd-journald.service"])
        c.run(["systemctl", "daemon-reload"])

    def show(self, prop: str) -> str:
        return self.c.run(["systemctl", "show", "-P", prop, "keeld"]).stdout.strip()

    def journal(self) -> str:
        return self.c.run(["journalctl", "--no-pager", "-o", "cat", "-u", "keeld"]).stdout

    def prog_id(self) -> int | None:
        link = json.loads(self.c.run(["ip", "-j", "-d", "link", "show", "dev", IFACE]).stdout)[0]
        return ((link.get("xdp") or {}).get("prog") or {}).get("id")

    def services(self) -> list[str]:
        out = self.c.run([self.keelctl, "-o", "json", "service", "list"], timeout=20).stdout
        return sorted(s["name"] for s in json.loads(out)["services"])

    def pins(self) -> list[str]:
        return sorted(os.listdir(self.c.path(f"/sys/fs/bpf/keel/{IFACE}")))

    def caps(self, pid: int, *units: Path) -> dict[str, int]:
        """PID's capability sets (CapEff, ...) and, as "want", the union of
        UNITS' CapabilityBoundingSet= (= AmbientCapabilities=)."""
        status = self.c.run(["cat", f"/proc/{pid}/status"]).stdout
        got = {f: cap_field(status, f) for f in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}
        got["want"] = cap_mask([cap for u in units for cap in unit_caps(u)])
        return got


def test_keeld_service_under_systemd(container):
    c = container
    u = KeeldUnit(c, keel_yaml(["web"]))
    show, journal, prog_id, services, pins = u.show, u.journal, u.prog_id, u.services, u.pins

    # The unit as shipped: no drop-in, the ExecStart= of the file.
    assert show("DropInPaths") == ""
    assert show("Type") == "notify"
    assert f"{SBINDIR}/keeld --config /etc/keel/keel.yaml" in show("ExecStart")

    # -- start: returns once keeld says READY=1
    c.run(["systemctl", "start", "keeld"], timeout=100)
    assert (show("ActiveState"), show("SubState")) == ("active", "running")
    assert show("StatusText").startswith(f"attached {IFACE}"), show("StatusText")
    pid = int(show("MainPID"))
    first_id = prog_id()
    assert first_id, "no XDP program on the interface"
    assert "prog" in pins() and "services" in pins(), pins()
    assert services() == ["web"]
    log = journal()
    assert re.search(rf"event=dataplane_attached .*interface={IFACE} .*prog_id={first_id}", log), log
    assert "event=ready" in log, log

    # -- its privileges and sandbox, as the unit says
    caps = u.caps(pid, UNIT)
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert caps[field] == caps["want"], f"{field} {caps[field]:#x}, the unit's {caps['want']:#x}"
    status = c.run(["cat", f"/proc/{pid}/status"]).stdout
    assert re.search(r"^NoNewPrivs:\s*1$", status, re.M), status
    assert re.search(r"^Seccomp:\s*2$", status, re.M), status
    mounts = mount_options(c.run(["cat", f"/proc/{pid}/mountinfo"]).stdout)
    for ro in ("/", "/proc/sys", "/sys", "/run"):
        assert "ro" in mounts[ro], (ro, mounts[ro])
    for rw in ("/sys/fs/bpf", "/run/keel"):
        assert "rw" in mounts[rw], (rw, mounts[rw])
    # UMask=0077 does not reach the socket: control.mode sets it (0600).
    assert oct(c.path(SOCKET).stat().st_mode & 0o777) == "0o600"

    # -- reload: a changed file applied, a broken one refused
    c.write("/etc/keel/keel.yaml", keel_yaml(["web", "web2"]))
    c.run(["systemctl", "reload", "keeld"], timeout=100)
    assert services() == ["web", "web2"]
    c.write("/etc/keel/keel.yaml", keel_yaml(["web"]).replace("tunnel_source_v4", "tunnel_sauce_v4"))
    bad = c.run(["systemctl", "reload", "keeld"], check=False, timeout=100)
    assert bad.returncode != 0, bad
    assert show("ActiveState") == "active" and int(show("MainPID")) == pid
    assert services() == ["web", "web2"]
    assert "event=reload_rejected" in journal()
    c.write("/etc/keel/keel.yaml", keel_yaml(["web", "web2"]))  # the last good file

    # -- restart: hitless, the next keeld adopts the running program
    c.run(["systemctl", "restart", "keeld"], timeout=130)
    assert (show("ActiveState"), show("SubState")) == ("active", "running")
    assert int(show("MainPID")) != pid
    assert show("NRestarts") == "0"  # a restart asked for, not a crash
    log = journal()
    assert re.search(rf"event=dataplane_adopted .*interface={IFACE} .*prog_id={first_id} "
                     r".*program=kept", log), log
    assert prog_id() == first_id
    assert services() == ["web", "web2"]

    # -- stop: keeld exits, the program stays attached with its pins
    c.run(["systemctl", "stop", "keeld"], timeout=60)
    assert show("ActiveState") == "inactive"
    assert show("Result") == "success"
    assert re.search(rf"event=stopped_left_in_place .*prog_id={first_id}", journal())
    assert prog_id() == first_id
    assert "prog" in pins() and "services" in pins(), pins()
    assert c.path("/run/keel").is_dir()  # RuntimeDirectoryPreserve=yes


def test_keeld_service_restarts_a_killed_keeld_hitless(container):
    """keeld killed (SIGKILL: no STOPPING=1, no clean stop): the XDP program
    stays attached through the gap, and systemd (Restart=on-failure,
    RestartSec=2s) starts a keeld that adopts it, kept, same program id."""
    u = KeeldUnit(container, keel_yaml(["web"]))
    container.run(["systemctl", "start", "keeld"], timeout=100)
    pid = int(u.show("MainPID"))
    first_id = u.prog_id()
    assert first_id, "no XDP program on the interface"
    assert u.show("NRestarts") == "0"

    container.run(["kill", "-9", str(pid)])
    # keeld is gone and systemd waits out RestartSec= (state auto-restart):
    # the program is still the one on the interface.
    wait_for("keeld's main process gone", lambda: u.show("MainPID") == "0", 10, 0.05)
    assert u.show("SubState") == "auto-restart", u.show("SubState")
    assert u.prog_id() == first_id
    assert "prog" in u.pins(), u.pins()

    def restarted():
        return (u.show("ActiveState"), u.show("SubState")) == ("active", "running") \
            and int(u.show("MainPID")) not in (0, pid)
    wait_for("keeld restarted by systemd", restarted, 30)  # RestartSec=2s, READY=1
    assert u.show("NRestarts") == "1"
    log = u.journal()
    assert "Main process exited, code=killed, status=9/KILL" in log, log
    assert re.search(rf"event=dataplane_adopted .*interface={IFACE} .*prog_id={first_id} "
                     r".*program=kept", log), log
    assert u.prog_id() == first_id
    assert u.services() == ["web"]


def test_keeld_service_broken_config_fails_at_the_start_limit(container):
    """A broken /etc/keel/keel.yaml: keeld exits 1 (keeld(8), EXIT STATUS:
    invalid configuration), which Restart=on-failure retries, as only exit 2
    is RestartPreventExitStatus=; the fifth start within
    StartLimitIntervalSec=60 (StartLimitBurst=5) is the last one, after
    which the unit stays failed (~8 s: four RestartSec=2s), never having
    attached.

    systemd 252 fails `systemctl start` at keeld's first exit (the restarts
    that follow are its own), refuses the sixth start with "Start request
    repeated too quickly" and leaves the unit's Result at exit-code
    (start-limit-hit is the refused job's result, not the unit's)."""
    broken = keel_yaml(["web"]).replace("tunnel_source_v4", "tunnel_sauce_v4")
    u = KeeldUnit(container, broken)
    p = container.run(["systemctl", "start", "keeld"], check=False, timeout=60)
    assert p.returncode != 0, p
    assert u.show("ExecMainStatus") == "1"
    wait_for("keeld.service refused at its start limit",
             lambda: "Start request repeated too quickly" in u.journal(), 30)
    assert (u.show("ActiveState"), u.show("Result")) == ("failed", "exit-code")
    assert (u.show("ExecMainCode"), u.show("ExecMainStatus")) == ("1", "1")  # exited, 1
    assert u.show("NRestarts") == "5"  # the fifth scheduled, then refused
    log = u.journal()
    assert log.count("event=start_rejected") == 5, log  # StartLimitBurst=5 runs of keeld
    assert "event=config_error" in log and "tunnel_sauce_v4" in log, log
    assert u.prog_id() is None


def test_keeld_service_dpdk_dropin_under_systemd(dpdk_container):
    """keeld.service with keeld-dpdk.conf as /etc/systemd/system/keeld.service.d/
    dpdk.conf, on a net_af_packet port: start returns once keeld said
    READY=1, keeld holds the unit's capabilities plus the drop-in's
    (CAP_NET_RAW), EAL keeps its runtime files in /run/dpdk (the drop-in's
    RuntimeDirectory=), keelctl answers, and stop is clean."""
    c = dpdk_container
    prefix = f"{c.name}-dpdk"
    u = KeeldUnit(c, keel_yaml(["web"], "dpdk", prefix), {"dpdk.conf": DPDK_DROPIN})
    assert u.show("DropInPaths") == "/etc/systemd/system/keeld.service.d/dpdk.conf"
    start = c.run(["systemctl", "start", "keeld"], check=False, timeout=100)
    assert start.returncode == 0, f"systemctl start keeld: {start.stderr}\n{u.journal()}"
    assert "Error creating" not in u.journal(), u.journal()  # EAL's runtime directory
    assert (u.show("ActiveState"), u.show("SubState")) == ("active", "running")
    pid = int(u.show("MainPID"))
    caps = u.caps(pid, UNIT, DPDK_DROPIN)
    assert "net_raw" in unit_caps(DPDK_DROPIN)
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert caps[field] == caps["want"], f"{field} {caps[field]:#x}, the two files' {caps['want']:#x}"
    assert c.path("/run/dpdk").is_dir()
    assert c.path(f"/run/dpdk/{prefix}").is_dir(), os.listdir(c.path("/run/dpdk"))
    mounts = mount_options(c.run(["cat", f"/proc/{pid}/mountinfo"]).stdout)
    assert "ro" in mounts["/run"], mounts["/run"]
    for rw in ("/run/keel", "/run/dpdk"):
        assert "rw" in mounts[rw], (rw, mounts[rw])
    assert u.services() == ["web"]
    assert "event=ready" in u.journal()

    c.run(["systemctl", "stop", "keeld"], timeout=60)
    assert u.show("ActiveState") == "inactive"
    assert (u.show("Result"), u.show("ExecMainStatus")) == ("success", "0")
    assert c.path("/run/keel").is_dir()  # RuntimeDirectoryPreserve=yes
