# SPDX-License-Identifier: Apache-2.0
"""keeld with exactly the capabilities deploy/keeld.service grants it (read
from the unit; no CAP_SYS_ADMIN), applied with setpriv the way systemd does
(bounding, inheritable and ambient sets, no_new_privs):
  - it attaches and balances; its effective set is the unit's, nothing more;
  - after kill -9 its successor adopts the pins and keeps the program (same
    id) and the established connection keeps its real;
  - the conntrack count (a bpf_map iterator) is available;
  - a reload (SIGHUP) adds a service;
  - pins of an older keeld (no prog_rodata) are adopted too: the program is
    swapped over the same maps (the connection stays), and the next restart
    keeps it again;
  - `keelctl daemon stop` detaches and removes the pins.
keelds run in a KeeldHost (lab.py), whose bpffs outlives each of them.
Each keeld here also runs under the unit's sandbox lines that sandbox_wrap()
knows how to apply without systemd (ProtectKernelLogs,
MemoryDenyWriteExecute, SystemCallFilter, UMask); the DPDK plane is run the same
way with keeld.service plus the keeld-dpdk.conf drop-in."""
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

import lab as labmod
from suite import ask, connect_and_ask, served, wait_serving

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "keeld.service.in"
DECAP_UNIT = DEPLOY / "keel-decap@.service.in"
DPDK_DROPIN = DEPLOY / "keeld-dpdk.conf"
PORT = 80
EXTRA_PORT = 8080


def kernel_at_least(major: int, minor: int) -> bool:
    """Whether this kernel's release is at least major.minor."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return not m or (int(m[1]), int(m[2])) >= (major, minor)


def unit_caps(unit: Path = UNIT) -> list[str]:
    """The unit's capabilities, lower case without CAP_ (setpriv's names)."""
    text = unit.read_text()
    bounding = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M).group(1).split()
    ambient = re.search(r"^AmbientCapabilities=(.*)$", text, re.M)
    # keeld's unit grants them as ambient too; keel-decap's runs as root and
    # has none (root holds its bounding set).
    assert ambient is None or bounding == ambient.group(1).split(), \
        "the unit's bounding and ambient sets differ"
    return [c.removeprefix("CAP_").lower() for c in bounding]


def unit_setting(key: str, *units: Path) -> str | None:
    """KEY's value as systemd merges it over a unit and its drop-ins, for a
    setting whose last line wins (yes/no switches)."""
    value = None
    for unit in units:
        for m in re.finditer(rf"^{key}=(.*)$", unit.read_text(), re.M):
            value = m.group(1).strip()
    return value


def unit_paths(key: str, *units: Path) -> list[str]:
    """A path-list setting (ReadOnlyPaths=, ReadWritePaths=) as systemd
    merges it over a unit and its drop-ins: lines add, an empty one resets
    the list; a "-" prefix (ignore if missing) dropped."""
    paths: list[str] = []
    for unit in units:
        for m in re.finditer(rf"^{key}=(.*)$", unit.read_text(), re.M):
            words = m.group(1).split()
            paths = paths + [w.removeprefix("-") for w in words] if words else []
    return paths


# What sandbox_wrap() does for each sandbox line it applies, after what
# systemd 252 does (systemd.exec(5)); keeld runs in a mount namespace of its
# own.
#   ReadOnlyPaths, ReadWritePaths, RuntimeDirectory: every mount at or under
#     a read-only path remounted read-only, except those at or under a
#     read-write one or a runtime directory (made first; one that is no mount
#     point is bound onto itself), as systemd 252 does
#     (test_systemd_unit.py: /sys and /run read-only, /sys/fs/bpf and
#     /run/keel writable).
#   ProtectKernelLogs: /proc/kmsg and /dev/kmsg inaccessible (systemd also
#     filters syslog(2), which keeld never calls).
#   UMask: the file mode creation mask keeld starts with.
#   MemoryDenyWriteExecute: the kernel's PR_SET_MDWE (Linux 6.3): no mapping
#     both writable and executable, none made executable later. systemd 252
#     filters with seccomp instead and refuses a little more (any mprotect
#     adding PROT_EXEC, shmat with SHM_EXEC), which nothing keeld runs does.
#   SystemCallFilter (a deny list): the same calls, with python3-seccomp.
# Not ProtectKernelTunables: systemd makes /sys/fs/bpf read-only under it,
# which ReadWritePaths= cannot undo (its own table names that path, and the
# read-only entry wins), so keeld could not pin; sandbox_wrap() refuses a
# unit that sets it.
# An inaccessible path is covered by a mode-000 file: keeld runs as root
# without CAP_DAC_OVERRIDE, so it cannot open it (systemd's own trick).
_SANDBOX_SCRIPT = r"""
inaccessible=$1; shift
umask "$UMASK"
for w in $RUNTIME; do mkdir -p "$w"; done
for w in $READ_WRITE; do
  [ -e "$w" ] || continue
  mountpoint -q "$w" || mount --bind "$w" "$w"
done
for p in $READ_ONLY; do
  mountpoint -q "$p" || mount --rbind "$p" "$p"  # its submounts kept
  for m in $(awk -v p="$p" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -u); do
    keep=no
    for w in $READ_WRITE; do case "$m" in "$w"|"$w"/*) keep=yes ;; esac; done
    # A lab's own submounts that refuse a bind remount (/run/netns and its
    # nsfs files) stay as they are; the read-only path itself must not.
    [ "$keep" = yes ] || mount -o remount,bind,ro "$m" 2>/dev/null || [ "$m" != "$p" ]
  done
done
if [ "$LOGS" = yes ]; then
  for f in /proc/kmsg /dev/kmsg; do [ -e "$f" ] && mount --bind "$inaccessible" "$f"; done
fi
exec /usr/bin/python3 -c '
import ctypes, errno, os, sys
if os.environ.pop("MDWE") == "yes":
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit("PR_SET_MDWE: " + os.strerror(ctypes.get_errno()))
denied = os.environ.pop("DENY_SYSCALLS").split()
if denied:
    import seccomp
    action = seccomp.ERRNO(getattr(errno, os.environ.pop("DENY_ERRNO")))
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in denied:
        try:
            f.add_rule(action, name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a system call of this architecture (systemd skips it too)
    f.load()
os.execvp(sys.argv[1], sys.argv[1:])
' "$@"
"""


def denied_syscalls(*units: Path) -> tuple[list[str], str]:
    """The system calls a unit's deny-list SystemCallFilter= ("~@group ...")
    refuses, expanded by this machine's systemd-analyze, and the errno they
    fail with (SystemCallErrorNumber=); ([], "") without a filter. An allow
    list is not emulated: the unit must not have one."""
    spec = unit_setting("SystemCallFilter", *units)
    if not spec:
        return [], ""
    assert spec.startswith("~"), f"only a deny list is emulated here: {spec}"
    names, groups = set(), spec[1:].split()
    while groups:  # a group may name others
        out = labmod.run(["systemd-analyze", "syscall-filter", groups.pop()]).stdout
        for line in out.splitlines():
            entry = line.split()[0] if line.startswith("    ") and line.split() else ""
            if entry.startswith("@"):
                groups.append(entry)
            elif entry and not entry.startswith("#"):
                names.add(entry)
    assert names, spec
    errno_name = unit_setting("SystemCallErrorNumber", *units)
    assert errno_name, "the unit must say SystemCallErrorNumber= (a refused call fails, not kills)"
    return sorted(names), errno_name


def runtime_paths(*units: Path) -> list[str]:
    """The /run/NAME of each RuntimeDirectory= of UNITS: systemd makes them,
    writable whatever ReadOnlyPaths= says."""
    return ["/run/" + d for d in unit_paths("RuntimeDirectory", *units)]


def writable_paths(*units: Path) -> list[str]:
    """What stays writable under UNITS' ReadOnlyPaths=: ReadWritePaths= and
    the runtime directories."""
    return unit_paths("ReadWritePaths", *units) + runtime_paths(*units)


def sandbox_wrap(lab, *units: Path) -> tuple[str, ...]:
    """A command prefix that applies the sandbox lines of UNITS (a unit and
    its drop-ins) that this file knows (above); it refuses a unit with
    ProtectKernelTunables=yes, under which systemd would not let keeld pin."""
    assert unit_setting("ProtectKernelTunables", *units) != "yes", \
        "ProtectKernelTunables=yes makes /sys/fs/bpf read-only whatever ReadWritePaths= says: keeld could not pin"
    inaccessible = lab.tmp / "inaccessible"
    if not inaccessible.exists():
        inaccessible.touch(mode=0o000)  # the umask only takes bits away
    denied, errno_name = denied_syscalls(*units)
    env = (f"UMASK={unit_setting('UMask', *units) or '0022'}",
           f"READ_ONLY={' '.join(unit_paths('ReadOnlyPaths', *units))}",
           f"READ_WRITE={' '.join(writable_paths(*units))}",
           f"RUNTIME={' '.join(runtime_paths(*units))}",
           f"DENY_SYSCALLS={' '.join(denied)}", f"DENY_ERRNO={errno_name}",
           f"LOGS={unit_setting('ProtectKernelLogs', *units) or 'no'}",
           f"MDWE={unit_setting('MemoryDenyWriteExecute', *units) or 'no'}")
    return ("unshare", "--mount", "env", *env, "sh", "-ec", _SANDBOX_SCRIPT, "sandbox", str(inaccessible))


def mount_options(mountinfo: str) -> dict[str, set[str]]:
    """Mount point -> per-mount options, from /proc/PID/mountinfo (the
    last mount on a point wins: it is the one seen)."""
    out = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        out[fields[4]] = set(fields[5].split(","))
    return out


def assert_sandboxed(pid: int, *units: Path) -> None:
    """keeld's own mounts show the sandbox of UNITS (sandbox_wrap) in force:
    a check of the wrap, so a test cannot pass because the wrap did
    nothing."""
    options = mount_options(Path(f"/proc/{pid}/mountinfo").read_text())
    for path in unit_paths("ReadOnlyPaths", *units):
        assert "ro" in options[path], (path, options)
    for path in writable_paths(*units):
        if path in options:
            assert "rw" in options[path], (path, options)
    if unit_setting("ProtectKernelLogs", *units) == "yes":
        assert "/proc/kmsg" in options or not Path("/proc/kmsg").exists(), options
    if unit_setting("SystemCallFilter", *units):  # denied_syscalls() refuses an empty one
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(r"^Seccomp:\s*2$", status, re.M), status


def cap_names() -> list[str]:
    """Capability names by number, as setpriv knows them."""
    return labmod.run(["setpriv", "--list-caps"]).stdout.split()


def cap_field(status: str, field: str) -> int:
    """A capability set (CapEff, CapBnd, ...) of a /proc/PID/status text."""
    return int(re.search(rf"^{field}:\s*([0-9a-f]+)$", status, re.M).group(1), 16)


def effective_caps(pid: int) -> int:
    return cap_field(Path(f"/proc/{pid}/status").read_text(), "CapEff")


def cap_mask(caps: list[str]) -> int:
    """CAPS (setpriv's names) as a capability set."""
    numbers = cap_names()
    return sum(1 << numbers.index(c) for c in caps)


def setpriv_wrap(caps: list[str]) -> tuple[str, ...]:
    """setpriv with exactly CAPS, as systemd applies a unit's
    CapabilityBoundingSet= and AmbientCapabilities= (bounding, inheritable
    and ambient sets, no_new_privs)."""
    spec = "-all," + ",".join("+" + c for c in caps)
    return ("setpriv", f"--inh-caps={spec}", f"--ambient-caps={spec}", f"--bounding-set={spec}", "--no-new-privs")


def test_unit_capabilities_run_adopt_reload_and_stop(lab, host):
    caps = unit_caps()
    assert "sys_admin" not in caps, caps
    wrap = (*sandbox_wrap(lab, UNIT), *setpriv_wrap(caps))
    want = cap_mask(caps)

    def start(config, name):
        k = host.start(config, name, wrap=wrap)
        assert effective_caps(k.proc.pid) == want, (hex(effective_caps(k.proc.pid)), hex(want))
        assert_sandboxed(k.proc.pid, UNIT)
        return k

    web = lab.service("web", 4, PORT, "tcp", "ipip")
    config = lab.keel_config([web])
    k = start(config, "caps1")
    conns = []
    try:
        wait_serving(lab, config)
        prog = lab.balancer_prog_id()
        assert host.pinned("prog") and host.pinned("prog_rodata") and host.pinned("map_layouts")
        real = connect_and_ask(lab, PORT, 1, conns)[0]
        conn = conns[0]

        # kill -9, then the same config: adopted, program kept.
        k.kill()
        k = start(config, "caps2")
        assert "event=dataplane_adopted" in k.log() and "program=kept" in k.log(), k.log()
        assert lab.balancer_prog_id() == prog
        assert ask(conn) == real
        # The conntrack count (a bpf_map iterator) works without it too;
        # its kfunc, bpf_map_sum_elem_count, is Linux 6.6's (before it the
        # count is unknown: null).
        stats = json.loads(k.keelctl("-o", "json", "stats").stdout)
        if kernel_at_least(6, 6):
            assert (stats["conntrack"]["entries"] or 0) >= 1, stats["conntrack"]
        else:
            assert stats["conntrack"]["entries"] is None, stats["conntrack"]

        # Reload: a second service appears.
        extra = lab.service("extra", 4, EXTRA_PORT, "tcp", "ipip")
        config2 = lab.keel_config([web, extra])
        k.reload(config2)
        served(lab.flows("tcp", lab.vip4, EXTRA_PORT, count=3))

        # Pins an older keeld made (no prog_rodata, no map_layouts): still
        # adopted; the program is swapped over the same maps, the connection
        # stays, and the record of layouts is made, frozen and pinned
        # without CAP_SYS_ADMIN.
        k.kill()
        host.run(["rm", f"{host.pin_dir}/prog_rodata", f"{host.pin_dir}/map_layouts"])
        k = start(config2, "caps3")
        log = k.log()
        assert "event=xdp_adopt_swaps_program" in log and "program=replaced" in log, log
        assert "event=xdp_adopt_layouts_unknown" in log, log
        swapped = lab.balancer_prog_id()
        assert swapped not in (None, prog)
        assert ask(conn) == real
        assert host.pinned("prog_rodata") and host.pinned("map_layouts")
        k.kill()
        k = start(config2, "caps4")
        assert "program=kept" in k.log(), k.log()
        assert lab.balancer_prog_id() == swapped
        served(lab.flows("tcp", lab.vip4, PORT, count=3))

        # The explicit stop detaches and removes the pins.
        k.keelctl("daemon", "stop")
        assert k.proc.wait(timeout=10) == 0, k.log()
        assert lab.balancer_prog_id() is None
        assert not host.pinned()
    finally:
        for c in conns:
            c.close()
        k.stop()


def test_dpdk_unit_and_dropin_capabilities_serve(lab, dpdk_host):
    """The DPDK plane under exactly keeld.service's capabilities plus those
    of its drop-in keeld-dpdk.conf (CAP_NET_RAW for net_af_packet), and the
    unit's sandbox lines (sandbox_wrap): EAL starts, the exception tap comes
    up, flows are balanced, a reload adds a service, and the capability set
    is the two files' union, nothing more."""
    caps = unit_caps(UNIT) + unit_caps(DPDK_DROPIN)
    web = lab.service("web", 4, PORT, "tcp", "ipip")
    config = lab.keel_config([web])
    # dpdk_host (skips on XDP) stops keeld, resets the plane and detaches
    # keel-decap however the test ends.
    k = dpdk_host.start(config, "dpdkcaps",
                        wrap=(*sandbox_wrap(lab, UNIT, DPDK_DROPIN), *setpriv_wrap(caps)))
    assert effective_caps(k.proc.pid) == cap_mask(caps)
    assert_sandboxed(k.proc.pid, UNIT, DPDK_DROPIN)
    wait_serving(lab, config)
    served(lab.flows("tcp", lab.vip4, PORT, count=4))
    extra = lab.service("extra", 4, EXTRA_PORT, "tcp", "ipip")
    k.reload(lab.keel_config([web, extra]))
    served(lab.flows("tcp", lab.vip4, EXTRA_PORT, count=3))


def test_decap_unit_capabilities_attach_and_detach(lab, need_keel):
    """keel-decap under exactly keel-decap@.service's bounding set (it runs as
    root, so that set is what it holds): attach, status and detach work on an
    interface of a namespace this test makes, status including the
    --allow-source list (read through its pins, not by id); one capability
    less fails."""
    if lab.dataplane != "xdp":
        pytest.skip("keel-decap is the same on both data planes: checked once")
    caps = unit_caps(DECAP_UNIT)
    assert "sys_admin" not in caps, caps
    ns = f"{lab.prefix}-dcap"
    pins = f"/sys/fs/bpf/{ns}"
    decap = str(lab.binary("keel-decap"))

    def as_unit(capset, *args, check=True):
        spec = "-all," + ",".join("+" + c for c in capset)
        return labmod.run(["nsenter", f"--net=/run/netns/{ns}", "setpriv", f"--bounding-set={spec}",
                           "--inh-caps=-all", "--no-new-privs", decap, *args, "--pin-root", pins],
                          check=check)

    labmod.run(["ip", "netns", "add", ns])
    try:
        labmod.run(["ip", "-n", ns, "link", "add", "name", "dc0", "type", "veth", "peer", "name", "dc1"])
        for ifname in ("dc0", "dc1"):
            labmod.run(["ip", "-n", ns, "link", "set", ifname, "up"])
        for c in caps:  # each capability is needed: without it the load fails
            p = as_unit([x for x in caps if x != c], "attach", "dc0", check=False)
            assert p.returncode != 0, f"keel-decap attached without CAP_{c.upper()}"
        as_unit(caps, "attach", "dc0", "--allow-source", "10.0.0.2", "--allow-source", "2001:db8::/64")
        status = json.loads(as_unit(caps, "status", "dc0", "-o", "json").stdout)
        assert status.get("attached"), status
        assert status.get("allow_source") == ["10.0.0.2/32", "2001:db8::/64"], status
        as_unit(caps, "detach", "dc0")
        link = labmod.run(["ip", "-n", ns, "-d", "link", "show", "dc0"]).stdout
        assert "prog/xdp" not in link, link
    finally:
        labmod.run(["ip", "netns", "del", ns], check=False)
        labmod.run(["rm", "-rf", pins], check=False)


def test_readonly_socket_serves_other_users_and_changes_are_audited(lab, need_keel):
    """control.readonly: a second socket, open to every local user here
    (mode 0666), answers queries and refuses changes (`forbidden`, exit 1);
    the main socket (0600) refuses such a user outright. Every change asked
    for, on either socket, is logged with the caller's uid (api_change)."""
    if lab.dataplane != "xdp":
        pytest.skip("the control socket is the same on both planes: run once, with xdp")
    # keelctl where an unprivileged user may run it: the build dir and
    # pytest's basetemp (0700 parents) may not be.
    bindir = Path(tempfile.mkdtemp(prefix="keel-keelctl-", dir="/tmp"))
    bindir.chmod(0o755)
    keelctl = bindir / "keelctl"
    keelctl.write_bytes(lab.binary("keelctl").read_bytes())
    keelctl.chmod(0o755)
    web = lab.service("web", 4, PORT, "tcp", "ipip")
    config = lab.keel_config([web])
    config["control"] = {"readonly": {"socket": "/run/keel/ro.sock", "mode": "0666"}}
    real = web["reals"][0]["address"]
    k = None
    try:
        k = lab.start_keeld(config, "readonly")
        k.wait_ready()

        def as_nobody(*args, socket=None):
            sock = ["--socket", socket] if socket else []
            return labmod.run(["nsenter", "-t", str(k.proc.pid), "-m", "-n",
                               "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               str(keelctl), *sock, *args], check=False, timeout=20)

        p = as_nobody("-o", "json", "service", "list", socket="/run/keel/ro.sock")
        assert p.returncode == 0, p.stdout + p.stderr
        assert [s["name"] for s in json.loads(p.stdout)["services"]] == ["web"]
        # daemon status is a query: served here, and not audited as a change.
        p = as_nobody("daemon", "status", socket="/run/keel/ro.sock")
        assert p.returncode == 0 and "\nrunning: 1 service, " in p.stdout, p.stdout + p.stderr
        p = as_nobody("real", "drain", "web", real, socket="/run/keel/ro.sock")
        assert p.returncode == 1, p.stdout + p.stderr
        assert "real.drain is not served on this read-only socket" in p.stderr, p.stderr
        p = as_nobody("service", "list")  # the main socket, 0600
        # Not reached (nothing sent): 69, EX_UNAVAILABLE (keelctl(8) EXIT STATUS).
        assert p.returncode == 69 and "ermission denied" in p.stderr, p.stdout + p.stderr
        assert "--socket PATH of control.readonly.socket" in p.stderr, p.stderr
        health = json.loads(k.keelctl("-o", "json", "health", "show").stdout)
        assert not any(r["draining"] for s in health["services"] for r in s["reals"]), health
        # root, on the main socket: served, and logged with its uid.
        k.keelctl("real", "drain", "web", real)
        log = k.full_log()
        audit = [line for line in log.splitlines() if "event=api_change" in line]
        assert len(audit) == 2, audit
        assert "method=real.drain uid=65534" in audit[0] and "socket=/run/keel/ro.sock" in audit[0], audit
        assert "result=forbidden" in audit[0], audit
        assert "method=real.drain uid=0" in audit[1] and "result=ok" in audit[1], audit
        assert "socket=/run/keel/keel.sock" in audit[1], audit
    finally:
        if k:
            k.stop()
        shutil.rmtree(bindir, ignore_errors=True)
