# SPDX-License-Identifier: Apache-2.0
"""deploy/keeld.service under a real systemd (Debian's /lib/systemd/systemd)
booted as PID 1 of a private container, the unit installed as `meson install`
would (@SBINDIR@, @BINDIR@ pointing into --keel-build) with no drop-in:
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
    in place (RuntimeDirectoryPreserve=yes) for the next keeld.

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
root, no systemd), and under the DPDK data plane (the unit's XDP plane is
the one that pins and adopts; keeld-dpdk.conf is test_privileges.py's)."""
import contextlib
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
from test_privileges import cap_names, unit_caps

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "keeld.service.in"
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

    def __init__(self, build: Path):
        self.build = build
        self.name = f"ksd{os.getpid()}"
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


@pytest.fixture
def container(request, root, keel_build):
    kinds = [k.strip() for k in request.config.getoption("--dataplane").split(",")]
    if "xdp" not in kinds:
        pytest.skip("keeld.service under systemd is checked with the XDP data plane")
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


def keel_yaml(services: list[str]) -> str:
    config = {
        "dataplane": {"kind": "xdp", "interface": IFACE, "xdp_mode": "native"},
        "node": {"tunnel_source_v4": ADDR, "next_hop_mac": "02:00:00:00:00:01"},
        "services": [{"name": name, "vip": f"192.0.2.{10 + i}", "port": 80, "protocol": "tcp",
                      "forwarding": "ipip",
                      "health": {"type": "tcp", "interval": "1s", "timeout": "1s"},
                      "reals": [{"address": "10.99.0.2", "weight": 100}]}
                     for i, name in enumerate(services)],
    }
    return labmod.to_yaml(config) + "\n"


def mount_options(mountinfo: str) -> dict[str, set[str]]:
    """Mount point -> per-mount options, from /proc/PID/mountinfo (the
    last mount on a point wins: it is the one seen)."""
    out = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        out[fields[4]] = set(fields[5].split(","))
    return out


def test_keeld_service_under_systemd(container):
    c = container
    build = c.build
    keelctl = str(build / labmod.Lab.BINARIES["keelctl"])
    unit = (UNIT.read_text().replace("@SBINDIR@", str(build / "src/daemon"))
            .replace("@BINDIR@", str(build / "src/cli")).replace("@DOCDIR@", "/tmp"))
    c.write("/etc/systemd/system/keeld.service", unit)
    c.write("/etc/keel/keel.yaml", keel_yaml(["web"]))
    c.run(["sh", "-ec", f"ip link set lo up; ip link add {IFACE} type veth peer name {PEER}; "
                        f"ip addr add {ADDR}/24 dev {IFACE}; ip link set {IFACE} up; "
                        f"ip link set {PEER} up"])
    # keeld's output goes to the journal (StandardOutput's default).
    c.run(["systemctl", "start", "systemd-journald.socket", "systemd-journald.service"])
    c.run(["systemctl", "daemon-reload"])

    def show(prop: str) -> str:
        return c.run(["systemctl", "show", "-P", prop, "keeld"]).stdout.strip()

    def journal() -> str:
        return c.run(["journalctl", "--no-pager", "-o", "cat", "-u", "keeld"]).stdout

    def prog_id() -> int | None:
        link = json.loads(c.run(["ip", "-j", "-d", "link", "show", "dev", IFACE]).stdout)[0]
        return ((link.get("xdp") or {}).get("prog") or {}).get("id")

    def services() -> list[str]:
        out = c.run([keelctl, "-o", "json", "service", "list"], timeout=20).stdout
        return sorted(s["name"] for s in json.loads(out)["services"])

    def pins() -> list[str]:
        return sorted(os.listdir(c.path(f"/sys/fs/bpf/keel/{IFACE}")))

    # The unit as shipped: no drop-in, the ExecStart= of the file.
    assert show("DropInPaths") == ""
    assert show("Type") == "notify"
    assert f"{build}/src/daemon/keeld --config /etc/keel/keel.yaml" in show("ExecStart")

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
    status = c.run(["cat", f"/proc/{pid}/status"]).stdout
    numbers = cap_names()
    want = sum(1 << numbers.index(cap) for cap in unit_caps(UNIT))
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        got = int(re.search(rf"^{field}:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
        assert got == want, f"{field} {got:#x}, the unit's {want:#x}"
    assert re.search(r"^NoNewPrivs:\s*1$", status, re.M), status
    assert re.search(r"^Seccomp:\s*2$", status, re.M), status
    mounts = mount_options(c.run(["cat", f"/proc/{pid}/mountinfo"]).stdout)
    for ro in ("/", "/proc/sys", "/sys"):
        assert "ro" in mounts[ro], (ro, mounts[ro])
    # /run itself stays writable to keeld under systemd 252 (ProtectSystem=
    # strict remounts / read-only but not the /run tmpfs): not checked.
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
