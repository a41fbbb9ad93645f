#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""keel's network-namespace lab: a one-armed L4 balancer topology built from
netns, veth pairs and one bridge, used by the integration suite and by demos.

    client ── router ══ LAN bridge ══ balancer   (XDP_TX back out the same port)
                             ╠═══════ real1..3    (VIP on lo, DSR replies)

See tests/integration/README.md for the full picture. Everything a Lab makes
is named with a per-run prefix (default "kl<pid>"), so parallel runs never
collide, and Lab.down() (also registered with atexit) removes all of it.

Data planes plug in through DATAPLANES: each entry says how to prepare the
balancer's link and what `dataplane:` section keeld reads. The suite is
parameterised by that key, so adding a data plane means adding one class.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
PYTHON = "/usr/bin/python3"  # the interpreter with Scapy; pyenv's python3 has none

# Addressing plan (per lab; every lab lives in its own namespaces, so parallel
# labs reuse these addresses without conflict).
CLIENT_NET4, CLIENT_NET6 = "10.201.1.", "fd00:201:1::"
LAN_NET4, LAN_NET6 = "10.201.2.", "fd00:201:2::"
VIP4, VIP6 = "10.201.100.10", "fd00:201:100::10"
ROUTER_LAN_MAC = "02:6b:00:02:00:01"
BALANCER_MAC = "02:6b:00:02:00:02"


def real_mac(i: int) -> str:
    return f"02:6b:00:02:00:{0x11 + i:02x}"


class LabError(RuntimeError):
    pass


def child_env(env: dict[str, str] | None) -> dict[str, str] | None:
    """This process's environment plus ENV, for a child (None: inherit as
    is). Every wrapper the lab runs commands through (ip netns exec,
    nsenter, sh, setpriv) passes the environment on."""
    return {**os.environ, **env} if env else None


def enter_netns(ns: str) -> None:
    """Moves the calling thread (setns moves only it) into network
    namespace NS; sockets it creates from then on belong there."""
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def run(cmd: list[str], check: bool = True, timeout: float = 30, input: str | None = None,
        env: dict[str, str] | None = None):
    """Runs a command, bounded in time; on failure says which command and why.
    ENV adds to its environment."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                           env=child_env(env))
    except subprocess.TimeoutExpired as e:
        raise LabError(f"timed out after {timeout}s: {shlex.join(cmd)}") from e
    if check and p.returncode != 0:
        raise LabError(f"failed ({p.returncode}): {shlex.join(cmd)}\n{p.stdout}{p.stderr}")
    return p


@dataclass
class Host:
    """One namespace. ifname is its LAN-facing (or only) interface."""
    role: str
    ns: str
    ifname: str = "eth0"
    v4: str = ""
    v6: str = ""
    mac: str = ""

    def argv(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns] + cmd

    def run(self, cmd: list[str], check: bool = True, timeout: float = 30):
        return run(self.argv(cmd), check=check, timeout=timeout)

    def run_host_mounts(self, cmd: list[str], check: bool = True, timeout: float = 30):
        """Runs in this network namespace but the host's mount namespace, so
        bpffs pins outlive the command (`ip netns exec` would give it a
        private /sys, and its pins would vanish when it exits)."""
        return run(["nsenter", f"--net=/run/netns/{self.ns}", *cmd], check=check,
                   timeout=timeout)

    def socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A socket in this namespace, usable from the calling process: a
        socket keeps the network namespace it was created in, and setns()
        only moves the calling thread, so a short-lived thread makes it.
        Lets a test hold connections open across keeld reloads."""
        box: dict = {}

        def make():
            try:
                enter_netns(self.ns)
                box["sock"] = socket.socket(family, kind, proto)
            except OSError as e:
                box["error"] = e

        t = threading.Thread(target=make)
        t.start()
        t.join(timeout=10)
        if "sock" not in box:
            raise LabError(f"socket in {self.ns}: {box.get('error', 'timed out')}")
        return box["sock"]

    def sh(self, script: str, check: bool = True, timeout: float = 30):
        """Runs a batch of shell lines in one exec (one fork instead of dozens)."""
        return run(self.argv(["sh", "-ec", script]), check=check, timeout=timeout)


# ---------------------------------------------------------------- data planes

class XdpDataplane:
    """keel's XDP data plane: keeld attaches the balancer natively to the
    balancer's veth. XDP_TX on a veth is only delivered when the peer veth has
    an XDP program, so the bridge-side peer gets a trivial XDP_PASS."""
    kind = "xdp"
    can_detach = True  # keelctl daemon stop --detach leaves it forwarding

    def prepare(self, lab: "Lab") -> None:
        obj = lab.build_dir / "bpf" / "xdp_pass.bpf.o"
        if not obj.exists():
            raise LabError(f"{obj} not built (ninja -C {lab.build_dir})")
        lab.switch.run(["ip", "link", "set", "dev", lab.balancer_peer, "xdpdrv",
                        "obj", str(obj), "sec", "xdp"])

    def config(self, lab: "Lab") -> dict:
        return {"kind": "xdp", "interface": lab.balancer.ifname, "xdp_mode": "native"}

    def attached(self, lab: "Lab") -> bool:
        """True once some XDP program sits on the balancer's interface."""
        return lab.balancer_prog_id() is not None

    def reset(self, lab: "Lab") -> None:
        """Leaves no program behind between tests, so the next keeld's attach
        is what the readiness check observes."""
        lab.balancer.run(["ip", "link", "set", "dev", lab.balancer.ifname, "xdp", "off"],
                         check=False)


class DpdkDataplane:
    """keel's DPDK data plane: keeld runs the EAL and drives the balancer's
    veth through net_af_packet, with two worker lcores on two queues
    (PACKET_FANOUT hashes each flow onto one queue, as RSS does on a NIC).

    af_packet only taps the interface, so the kernel keeps its addresses on
    it and itself answers ARP/ND, pings to the balancer and the health-check
    replies; keel forwards what is for a VIP, and what it would pass (no
    exception interface here) the kernel has already seen. The kernel drops
    its own copy of VIP traffic: the balancer does not forward and does not
    own the VIPs. (A dedicated NIC or net_af_xdp takes the traffic away from
    the kernel; that needs dpdk.exception_interface: docs/dpdk.md.)

    EAL runs without hugepages or PCI, in memory only (no files under
    /var/run/dpdk), so labs run side by side; its lcores float over the
    CPUs this process may use, and idle workers sleep instead of spinning,
    so a lab does not take two cores of a shared CI box."""
    kind = "dpdk"
    can_detach = False  # the workers are keeld's threads
    workers = [1, 2]

    def prepare(self, lab: "Lab") -> None:
        pass  # no XDP_TX: af_packet transmits through the veth like any socket

    def config(self, lab: "Lab") -> dict:
        return self.config_for(lab.balancer.ifname, f"{lab.prefix}-dpdk")

    @classmethod
    def config_for(cls, interface: str, prefix: str, shconf: bool = False) -> dict:
        """The dataplane section for a net_af_packet port on INTERFACE, EAL
        files under --file-prefix PREFIX. shconf: EAL keeps its runtime
        files under /run/dpdk/PREFIX, as on a DPDK node (docs/dpdk.md);
        else none (--no-shconf), so labs run side by side."""
        cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
        lcores = f"(0-{max(cls.workers)})@({cpus})"
        return {"kind": "dpdk", "interface": interface,
                "dpdk": {"eal_args": ["--no-huge", "-m", "128", "--no-pci"] + ([] if shconf else ["--no-shconf"]) +
                                     ["--no-telemetry", "--file-prefix", prefix, "--lcores", lcores,
                                      "--log-level", "lib.eal:warning"],
                         "port": f"net_af_packet0,iface={interface},qpairs={len(cls.workers)}",
                         "workers": cls.workers,
                         "rx_descriptors": 256, "tx_descriptors": 256,
                         "mbufs_per_worker": 2048, "idle_sleep_us": 200}}

    def attached(self, lab: "Lab") -> bool:
        """True while some packet socket is bound to the balancer's interface
        (the af_packet port: only keeld opens one there)."""
        ifindex = json.loads(lab.balancer.run(
            ["ip", "-j", "link", "show", "dev", lab.balancer.ifname]).stdout)[0]["ifindex"]
        rows = lab.balancer.run(["cat", "/proc/net/packet"]).stdout.splitlines()[1:]
        # sk RefCnt Type Proto Iface R Rmem User Inode
        return any(len(r.split()) > 4 and int(r.split()[4]) == ifindex for r in rows)

    def reset(self, lab: "Lab") -> None:
        pass  # keeld's exit closes the port; nothing stays behind

    def cleanup(self, lab: "Lab") -> None:
        """EAL leaves an empty runtime directory per --file-prefix."""
        import shutil
        shutil.rmtree(f"/run/dpdk/{lab.prefix}-dpdk", ignore_errors=True)


# The suite's --dataplane values: one class per data plane.
DATAPLANES = {"xdp": XdpDataplane, "dpdk": DpdkDataplane}


# ---------------------------------------------------------------- YAML config

def to_yaml(value, indent: int = 0) -> str:
    """A minimal YAML emitter for keeld configs (dicts, lists, str, int).
    Strings are always double-quoted so addresses and MACs stay strings."""
    pad = "  " * indent
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:\n{to_yaml(v, indent + 1)}")
            else:
                out.append(f"{pad}{k}: {to_yaml_scalar(v)}")
        return "\n".join(out)
    if isinstance(value, list):
        out = []
        for item in value:
            body = to_yaml(item, indent + 1) if isinstance(item, (dict, list)) else \
                f"{'  ' * (indent + 1)}{to_yaml_scalar(item)}"
            out.append(f"{pad}- {body.lstrip()}")
        return "\n".join(out)
    return pad + to_yaml_scalar(value)


def to_yaml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (dict, list)):
        return "{}" if isinstance(v, dict) else "[]"
    return json.dumps(str(v))


# ---------------------------------------------------------------- keeld handle

def with_private_mounts(lab: "Lab", then: str) -> list[str]:
    """The command that runs shell line THEN in the balancer's network
    namespace and a mount namespace of its own (each `ip netns exec` makes
    one, with a fresh /sys) holding a private bpffs and a private tmpfs on
    /run/keel: the mounts of every keeld a lab runs, whether that keeld owns
    the namespace (Keeld) or a holder does (KeeldHost). A mount that fails
    ends the shell (-e) before THEN runs."""
    script = ("mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf\n"
              "mkdir -p /run/keel\n"
              "mount -t tmpfs -o size=4m,mode=0755 keel-lab /run/keel\n"
              f"{then}")
    return lab.balancer.argv(["sh", "-ec", script])


class Keeld:
    """A running keeld in the balancer namespace, in a mount namespace of its
    own (with_private_mounts) or of a KeeldHost. So pinned maps and the
    control socket of parallel labs (or of a keeld someone runs on the host)
    never collide, and vanish with the process (or with the host).
    keelctl() reaches the socket by entering that namespace. Keeld.start is
    how the lab starts one (Lab.start_keeld, KeeldHost.start)."""

    @classmethod
    def start(cls, lab: "Lab", config: dict, name: str, wait: "Callable[[Keeld], None] | None",
              host: "KeeldHost | None" = None, args: tuple[str, ...] = (),
              wrap: tuple[str, ...] = (), env: dict[str, str] | None = None) -> "Keeld":
        """A keeld on CONFIG (written as NAME.yaml in the lab's directory,
        logging to NAME.log), once WAIT(keeld) returns (None: at once, for a
        test that watches start-up itself). A WAIT that fails stops keeld
        before the error goes on, so a failed start leaves nothing running.
        HOST, ARGS, WRAP and ENV as for Keeld()."""
        path = lab.write_config(config, f"{name}.yaml")
        k = cls(lab, path, lab.tmp / f"{name}.log", host=host, args=args, env=env, wrap=wrap)
        if wait is None:
            return k
        try:
            wait(k)
        except Exception:
            k.stop()
            raise
        return k

    def __init__(self, lab: "Lab", config_path: Path, log_path: Path,
                 host: "KeeldHost | None" = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, wrap: tuple[str, ...] = ()):
        """HOST: the KeeldHost whose mount namespace keeld enters (None: a
        new one of its own). WRAP: a command keeld runs under, e.g. setpriv
        with fewer capabilities (test_privileges.py)."""
        self.lab = lab
        self.config_path = config_path
        self.log_path = log_path
        self._log = open(log_path, "w")
        cmd = [*wrap, str(lab.binary("keeld")), "--config", str(config_path), *args]
        if host is None:
            argv = with_private_mounts(lab, f"exec {shlex.join(cmd)}")
        else:
            # Restart tests: the mounts belong to the holder, so the pins
            # outlive this keeld and the next one finds them.
            argv = host.argv(cmd)
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=child_env(env))
        lab._procs.append(self.proc)
        lab._keeld = self  # the one reasons() and worker_packets() ask

    def wait_logged(self, event: str, timeout: float = 15.0, after: int = 0) -> None:
        """Waits, bounded, until keeld logs `event=EVENT` (past offset AFTER
        of the log); fails at once if keeld exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if f"event={event}" in self._log_text()[after:]:
                return
            if self.proc.poll() is not None:
                raise LabError(f"keeld exited with {self.proc.returncode} before {event}:\n{self.log()}")
            time.sleep(0.05)
        raise LabError(f"keeld did not log {event} within {timeout}s:\n{self.log()}")

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Waits, bounded, until keeld logs that it is ready (programmed)."""
        self.wait_logged("ready", timeout)

    def kill(self) -> int | None:
        """SIGKILL: keeld gets no chance to clean anything up."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        return self._reaped()

    def _reaped(self) -> int | None:
        """After keeld exited: closes its log, drops it from the lab's
        processes, and gives its exit status."""
        self._log.close()
        with contextlib.suppress(ValueError):
            self.lab._procs.remove(self.proc)
        return self.proc.returncode

    def reload(self, config: dict, timeout: float = 15.0) -> None:
        """Rewrites the config file and sends SIGHUP (keeld's reload), then
        waits, bounded, for keeld to log the outcome."""
        self.config_path.write_text(to_yaml(config) + "\n")
        mark = len(self._log_text())
        done_before = self._log_text().count("reload_done")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self._log_text()
            if text.count("reload_done") > done_before:
                return
            for bad in ("reload_rejected", "reload_failed", "reload_restart_needed"):
                if bad in text[mark:]:
                    raise LabError(f"keeld reload: {bad}:\n{text[-2000:]}")
            if self.proc.poll() is not None:
                raise LabError(f"keeld exited during reload:\n{text[-2000:]}")
            time.sleep(0.1)
        raise LabError(f"keeld did not finish reloading within {timeout}s:\n{self.log()}")

    def full_log(self) -> str:
        """keeld's whole log so far (log() is its tail, for messages)."""
        return self._log_text()

    def _log_text(self) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def keelctl(self, *args: str, check: bool = True, timeout: float = 20,
                env: dict[str, str] | None = None):
        """Runs keelctl in keeld's network and mount namespaces (so it finds
        the control socket under the private /run/keel); `env` adds to its
        environment (e.g. COLUMNS, the width its tables fit)."""
        cmd = ["nsenter", "-t", str(self.proc.pid), "-m", "-n",
               str(self.lab.binary("keelctl")), *args]
        return run(cmd, check=check, timeout=timeout, env=env)

    def log(self) -> str:
        if not self._log.closed:  # also readable after stop()
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_attached(self, timeout: float = 15.0) -> None:
        """Waits, bounded, until the data plane is attached to the balancer's
        interface (the plane's own test); fails at once if keeld exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LabError(f"keeld exited with {self.proc.returncode}:\n{self.log()}")
            if self.lab.plane.attached(self.lab):
                return
            time.sleep(0.1)
        raise LabError(f"keeld did not attach within {timeout}s:\n{self.log()}")

    def stop(self) -> int | None:
        if self._log.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self._reaped()


class KeeldHost:
    """A mount namespace for keelds that must outlive one another: a holder
    process in the balancer's namespace owns a private bpffs and /run/keel,
    and each keeld enters it (nsenter), so pins and the socket survive a
    keeld's death (kill -9) the way they do on a host. Bounded: the holder
    sleeps at most 10 minutes; the lab ends it at down()."""

    def __init__(self, lab: "Lab"):
        self.lab = lab
        self.proc = subprocess.Popen(with_private_mounts(lab, "echo ready\nexec sleep 600"),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        lab._procs.append(self.proc)
        self._keelds: list[Keeld] = []  # every keeld start() made: close() stops those still running
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.close()
            raise LabError(f"keeld host did not start: {line!r}")

    def argv(self, cmd: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.proc.pid), "-m", "-n", *cmd]

    def run(self, cmd: list[str], check: bool = True, timeout: float = 30):
        return run(self.argv(cmd), check=check, timeout=timeout)

    def start(self, config: dict, name: str, args: tuple[str, ...] = (),
              wrap: tuple[str, ...] = (), env: dict[str, str] | None = None,
              wait_ready: bool = True) -> Keeld:
        """A keeld in this host (Keeld.start) once it logs ready (WAIT_READY
        false: at once, for a test that watches readiness itself). Nothing is
        reset first: it adopts what the keeld before it left attached. Ready,
        not merely attached, as an adopted program is attached all along."""
        k = Keeld.start(self.lab, config, name, Keeld.wait_ready if wait_ready else None,
                        host=self, args=args, wrap=wrap, env=env)
        self._keelds.append(k)
        return k

    def check_config(self, config: dict, name: str) -> subprocess.CompletedProcess:
        """keeld --check-config on CONFIG (written as NAME.yaml) in this
        host, where it sees what the keelds before it left pinned."""
        path = self.lab.write_config(config, f"{name}.yaml")
        return self.run([str(self.lab.build_dir / self.lab.BINARIES["keeld"]), "--check-config", str(path)],
                        check=False)

    @property
    def pin_dir(self) -> str:
        """Where keeld pins the balancer's maps and program
        (src/dataplane/xdp/xdp_dataplane.h)."""
        return f"/sys/fs/bpf/keel/{self.lab.balancer.ifname}"

    @property
    def state_key(self) -> str:
        """The key of keeld's state files: the interface (XDP), "dpdk-" and
        the interface its net_af_packet port taps (DPDK; dpdkStateKey() in
        src/common/devargs.h)."""
        ifname = self.lab.balancer.ifname
        return f"dpdk-{ifname}" if self.lab.dataplane == "dpdk" else ifname

    @property
    def state_path(self) -> str:
        """Where keeld keeps its runtime state (keelctl's changes): beside
        the control socket, one file per interface like the pins
        (stateFiles() in src/daemon/state_files.h)."""
        return f"/run/keel/runtime-{self.state_key}.json"

    @property
    def conntrack_path(self) -> str:
        """Where a DPDK keeld saves its connection tables at a clean stop."""
        return f"/run/keel/conntrack-{self.state_key}.bin"

    def exists(self, path: str) -> bool:
        """Whether PATH exists in this host's mounts (bpffs, /run/keel)."""
        return self.run(["test", "-e", path], check=False).returncode == 0

    def pinned(self, name: str = "") -> bool:
        """Whether keeld's pin NAME (without one: its pin directory) exists."""
        return self.exists(f"{self.pin_dir}/{name}" if name else self.pin_dir)

    def close(self) -> None:
        """Stops (SIGTERM) every keeld of this host a test left running (one
        that failed before its own stop), then the holder."""
        for k in getattr(self, "_keelds", []):
            k.stop()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)
        with contextlib.suppress(ValueError):
            self.lab._procs.remove(self.proc)


# ---------------------------------------------------------------- the lab

@dataclass
class Lab:
    # Where the build puts the binaries the lab drives (build-dir relative).
    BINARIES = {"keeld": "src/daemon/keeld", "keel-decap": "src/decap/keel-decap",
                "keelctl": "src/cli/keelctl"}

    build_dir: Path
    dataplane: str = "xdp"
    n_reals: int = 3
    n_client_addrs: int = 8      # extra client sources for per-client tests
    prefix: str = field(default_factory=lambda: f"kl{os.getpid()}")
    lan_mtu: int = 1500

    def __post_init__(self):
        self.build_dir = Path(self.build_dir).resolve()
        if self.dataplane not in DATAPLANES:
            raise LabError(f"unknown data plane {self.dataplane!r}; known: {sorted(DATAPLANES)}")
        self.plane = DATAPLANES[self.dataplane]()
        p = self.prefix
        self.client = Host("client", f"{p}-client", "eth0", CLIENT_NET4 + "2", CLIENT_NET6 + "2")
        # The router's LAN side is eth1; its client side is eth0.
        self.router = Host("router", f"{p}-router", "eth1", LAN_NET4 + "1", LAN_NET6 + "1",
                           ROUTER_LAN_MAC)
        self.balancer = Host("balancer", f"{p}-lb", "eth0", LAN_NET4 + "2", LAN_NET6 + "2",
                             BALANCER_MAC)
        self.reals = [Host(f"real{i + 1}", f"{p}-real{i + 1}", "eth0", f"{LAN_NET4}{11 + i}",
                           f"{LAN_NET6}{11 + i}", real_mac(i)) for i in range(self.n_reals)]
        self.switch = Host("switch", f"{p}-sw", "br0")
        self.balancer_peer = "p-lb"     # bridge port facing the balancer
        self.vip4, self.vip6 = VIP4, VIP6
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen] = []
        self._servers: list[subprocess.Popen] = []
        self._server_of: dict[str, subprocess.Popen] = {}  # role -> its server
        self._server_ports: tuple = ((80,), (80,))
        self._decap: set[str] = set()
        self._keeld: Keeld | None = None  # the last one started, by any path (reasons())
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{p}-"))
        self._up = False

    # -- helpers

    def binary(self, name: str) -> Path:
        return self.build_dir / self.BINARIES[name]

    def has_binary(self, name: str) -> bool:
        return self.binary(name).exists()

    @property
    def hosts(self) -> list[Host]:
        return [self.client, self.router, self.balancer, *self.reals]

    def client_sources(self, family: int) -> list[str]:
        """The client's primary address first, then its extra addresses."""
        net, base = (CLIENT_NET4, self.client.v4) if family == 4 else (CLIENT_NET6, self.client.v6)
        return [base] + [f"{net}{3 + i}" for i in range(self.n_client_addrs)]

    def vip(self, family: int) -> str:
        return self.vip4 if family == 4 else self.vip6

    def balancer_prog_id(self) -> int | None:
        """The id of the XDP program on the balancer's interface (keel's
        balancer or self_check's xdp_pass), if any."""
        p = self.balancer.run(["ip", "-j", "-d", "link", "show", "dev", self.balancer.ifname])
        xdp = json.loads(p.stdout)[0].get("xdp")
        if not xdp:
            return None
        prog = xdp.get("prog") or {}
        if "id" in prog:
            return int(prog["id"])
        for att in xdp.get("attached", []):
            if "prog" in att and "id" in att["prog"]:
                return int(att["prog"]["id"])
        return None

    # -- build up

    # What a lab names, by where (the pid is its default prefix's): its
    # namespaces, keel-decap pins, DPDK runtime and temporary directories.
    LEFTOVERS = {
        "/run/netns": re.compile(r"kl(\d+)-(client|router|lb|sw|nhgw|dcap|real\d+)"),
        "/sys/fs/bpf": re.compile(r"kl(\d+)-real\d+-decap"),
        "/run/dpdk": re.compile(r"kl(\d+)-dpdk"),
        tempfile.gettempdir(): re.compile(r"kl(\d+)-[A-Za-z0-9_]{8}"),  # mkdtemp's
    }

    @staticmethod
    def remove_leftovers_of_dead_labs():
        """What a lab whose process was killed (SIGKILL: meson's timeout half
        a second after its SIGTERM, possibly mid-teardown) left behind, named
        as LEFTOVERS says and owned by root, when that pid is gone: the
        processes still in its namespaces (keeld, servers, started in
        sessions of their own, outlive it) are killed, then the namespaces
        (with their links and programs), pins and directories removed."""
        for base, pattern in Lab.LEFTOVERS.items():
            for name in os.listdir(base) if os.path.isdir(base) else []:
                m = pattern.fullmatch(name)
                path = os.path.join(base, name)
                if not m or os.path.exists(f"/proc/{m.group(1)}") or os.lstat(path).st_uid != 0:
                    continue
                if base == "/run/netns":
                    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError, ValueError):
                            os.kill(int(pid), signal.SIGKILL)
                    run(["ip", "netns", "del", name], check=False)
                elif os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)

    def up(self) -> "Lab":
        if os.geteuid() != 0:
            raise LabError("the lab needs root (netns, veth, XDP)")
        self.remove_leftovers_of_dead_labs()
        atexit.register(self.down)
        self._up = True
        # keel-decap pins its links in the host's bpffs.
        run(["sh", "-c", "mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf"])
        for h in [self.switch, *self.hosts]:
            run(["ip", "netns", "add", h.ns])
            self._namespaces.append(h.ns)
        self._make_switch()
        self._make_links()
        self._configure_hosts()
        self.plane.prepare(self)
        return self

    def _make_switch(self):
        # No STP, no forwarding delay, no multicast snooping: ports forward at
        # once and NDP multicast is flooded like on a dumb switch.
        self.switch.sh(f"""
            ip link set lo up
            ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
            ip link set br0 mtu {self.lan_mtu} up
        """)

    def _veth(self, a: Host, a_if: str, b_ns: str, b_if: str, mac: str = ""):
        # Both ends are created directly inside their namespaces, so nothing
        # ever appears (or can collide) in the root namespace.
        cmd = ["ip", "link", "add", a_if, "netns", a.ns]
        if mac:
            cmd += ["address", mac]
        cmd += ["type", "veth", "peer", "name", b_if, "netns", b_ns]
        run(cmd)

    def _make_links(self):
        sw = self.switch.ns
        self._veth(self.client, "eth0", self.router.ns, "eth0")
        lan = [(self.router, "p-rt"), (self.balancer, self.balancer_peer)] + \
              [(r, f"p-{r.role}") for r in self.reals]
        for host, port in lan:
            self._veth(host, host.ifname, sw, port, host.mac)
        ports = " ".join(p for _, p in lan)
        # veth leaves TCP/UDP checksums partial; a packet that an XDP program
        # rewrites and XDP_TXes keeps that partial checksum and the real drops
        # it. Turning tx offloads off makes every sender finish its checksum.
        self.switch.sh(f"""
            for p in {ports}; do
              ethtool -K $p tx off >/dev/null
              sysctl -qw net.ipv6.conf.$p.disable_ipv6=1
              ip link set $p mtu {self.lan_mtu} master br0 up
            done
        """)

    def _host_common(self, h: Host) -> str:
        # The same for every host: h is for symmetry with the callers.
        return """
            ip link set lo up
            sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
            sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
            for i in $(ls /sys/class/net); do
              [ "$i" = lo ] && continue
              ethtool -K $i tx off >/dev/null
              sysctl -qw net.ipv4.conf.$i.rp_filter=0 net.ipv6.conf.$i.accept_dad=0
              ip link set $i up
            done
        """

    def _configure_hosts(self):
        c, r, b = self.client, self.router, self.balancer
        extra4 = "\n".join(f"ip addr add {a}/24 dev eth0" for a in self.client_sources(4)[1:])
        extra6 = "\n".join(f"ip addr add {a}/64 dev eth0 nodad" for a in self.client_sources(6)[1:])
        c.sh(self._host_common(c) + f"""
            ip addr add {c.v4}/24 dev eth0
            ip addr add {c.v6}/64 dev eth0 nodad
            {extra4}
            {extra6}
            ip route add default via {CLIENT_NET4}1
            ip -6 route add default via {CLIENT_NET6}1
        """)
        # The router: forwards, never redirects (the balancer and the reals
        # share its LAN port, so every encapsulated packet goes back out the
        # interface it came in on), and routes the VIPs to the balancer.
        r.sh(f"""
            ip link set eth1 mtu {self.lan_mtu}
        """ + self._host_common(r) + f"""
            sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
            sysctl -qw net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0
            sysctl -qw net.ipv4.conf.eth1.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
            ip addr add {CLIENT_NET4}1/24 dev eth0
            ip addr add {CLIENT_NET6}1/64 dev eth0 nodad
            ip addr add {r.v4}/24 dev eth1
            ip addr add {r.v6}/64 dev eth1 nodad
            ip route add {VIP4}/32 via {b.v4}
            ip -6 route add {VIP6}/128 via {b.v6}
        """)
        b.sh(f"ip link set eth0 mtu {self.lan_mtu}\n" + self._host_common(b) + f"""
            sysctl -qw net.ipv4.conf.all.accept_redirects=0 net.ipv6.conf.all.accept_redirects=0
            ip addr add {b.v4}/24 dev eth0
            ip addr add {b.v6}/64 dev eth0 nodad
            ip route add default via {r.v4}
            ip -6 route add default via {r.v6}
        """)
        for real in self.reals:
            # VIPs on lo: the real accepts VIP traffic (decapsulated or
            # MAC-rewritten) as local. arp_ignore/arp_announce keep it from
            # answering or advertising the VIP on the LAN (L2 DSR, as IPVS-DR).
            real.sh(f"ip link set eth0 mtu {self.lan_mtu}\n" + self._host_common(real) + f"""
                sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
                sysctl -qw net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
                ip addr add {VIP4}/32 dev lo
                ip addr add {VIP6}/128 dev lo nodad
                ip addr add {real.v4}/24 dev eth0
                ip addr add {real.v6}/64 dev eth0 nodad
                ip route add default via {r.v4}
                ip -6 route add default via {r.v6}
            """)

    # -- servers, decap, client

    def start_servers(self, tcp_ports=(80,), udp_ports=(80,), timeout: float = 10.0):
        """Starts a name-answering server on every real and waits until each
        has bound its sockets."""
        self._server_ports = (tuple(tcp_ports), tuple(udp_ports))
        for real in self.reals:
            self._start_server(real, timeout)

    def _start_server(self, real: Host, timeout: float = 10.0):
        tcp_ports, udp_ports = self._server_ports
        proc = self._spawn_server(real, tcp_ports, udp_ports, timeout)
        self._servers.append(proc)
        self._server_of[real.role] = proc

    def _spawn_server(self, real: Host, tcp_ports, udp_ports, timeout: float) -> subprocess.Popen:
        argv = [PYTHON, str(HERE / "lab_server.py"), "--name", real.role,
                "--udp-addr", VIP4, "--udp-addr", VIP6]
        argv += [a for p in tcp_ports for a in ("--tcp-port", str(p))]
        argv += [a for p in udp_ports for a in ("--udp-port", str(p))]
        proc = subprocess.Popen(real.argv(argv), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._procs.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            raise LabError(f"server on {real.role} did not start: {line!r} "
                           f"{proc.stderr.read() if proc.poll() is not None else ''}")
        return proc

    def start_endpoint(self, real: Host, tcp_port: int, timeout: float = 10.0) -> subprocess.Popen:
        """A second server on REAL, TCP on TCP_PORT only, e.g. a health
        endpoint apart from the service: stop_endpoint() fails the real's
        check while its own server keeps serving. down() ends it too."""
        return self._spawn_server(real, (tcp_port,), (), timeout)

    def stop_endpoint(self, proc: subprocess.Popen, timeout: float = 5.0):
        """Stops a start_endpoint() server (no-op if it has ended)."""
        self._end(proc, timeout)

    def stop_server(self, real: Host, timeout: float = 5.0):
        """Stops one real's server (its listening sockets close: connects are
        refused, as when a service dies on a live host)."""
        proc = self._server_of.pop(real.role, None)
        if proc is not None:
            self._end(proc, timeout)

    @staticmethod
    def _end(proc: subprocess.Popen, timeout: float):
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def restart_server(self, real: Host, timeout: float = 10.0):
        """Starts a stopped real's server again (no-op if it runs)."""
        proc = self._server_of.get(real.role)
        if proc is not None and proc.poll() is None:
            return
        self._start_server(real, timeout)

    def decap_pin_root(self, real: Host) -> str:
        # Every real's interface is called eth0: a per-real pin root keeps
        # their pinned links apart (and apart from other labs).
        return f"/sys/fs/bpf/{self.prefix}-{real.role}-decap"

    def decap_attach(self):
        """keel-decap on every real's LAN interface (ipip forwarding). Its
        XDP link is pinned in the host bpffs, so it is attached from the
        host's mount namespace."""
        for real in self.reals:
            if real.ns in self._decap:
                continue
            real.run_host_mounts([str(self.binary("keel-decap")), "attach", real.ifname,
                                  "--pin-root", self.decap_pin_root(real)])
            self._decap.add(real.ns)

    def decap_detach(self):
        for real in self.reals:
            if real.ns in self._decap:
                real.run_host_mounts([str(self.binary("keel-decap")), "detach", real.ifname,
                                      "--pin-root", self.decap_pin_root(real)], check=False)
                self._decap.discard(real.ns)
            self._remove_pins(self.decap_pin_root(real))

    def decap_status(self) -> dict[str, object]:
        """keel-decap's own view (attached, counters) per real, for diagnostics."""
        out = {}
        for real in self.reals:
            p = real.run_host_mounts([str(self.binary("keel-decap")), "status", real.ifname,
                                      "-o", "json", "--pin-root", self.decap_pin_root(real)],
                                     check=False)
            try:
                out[real.role] = json.loads(p.stdout)
            except ValueError:
                out[real.role] = (p.stdout + p.stderr).strip()
        return out

    @staticmethod
    def _remove_pins(root: str):
        """Removes a pin directory this lab made (a pinned link detaches when
        its last pin goes), whatever the tool that made it left behind."""
        path = Path(root)
        if not path.is_dir():
            return
        for sub in sorted(path.rglob("*"), key=lambda x: len(x.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir() if sub.is_dir() else sub.unlink()
        with contextlib.suppress(OSError):
            path.rmdir()

    def flows(self, proto: str, dst: str, port: int, count: int = 1,
              src: str | list[str] | None = None, timeout: float = 2.0,
              retries: int = 0, host: "Host | None" = None) -> list[dict]:
        """Runs COUNT flows from the client, or from HOST (COUNT per source
        address if SRC lists several); returns one dict per flow with src,
        sport, dst, dport, proto and either real or error."""
        argv = [PYTHON, str(HERE / "lab_client.py"), proto, "--dst", dst, "--port", str(port),
                "--count", str(count), "--timeout", str(timeout), "--retries", str(retries)]
        sources = [src] if isinstance(src, str) else list(src or [])
        for a in sources:
            argv += ["--src", a]
        bound = max(1, len(sources)) * count * (retries + 1) * (timeout + 1) + 10
        p = (host or self.client).run(argv, timeout=bound)
        return json.loads(p.stdout)["flows"]

    def ping(self, host: Host, dst: str, count: int = 1, timeout: int = 2) -> bool:
        p = host.run(["ping", "-c", str(count), "-W", str(timeout), "-i", "0.2", dst],
                     check=False, timeout=count * (timeout + 1) + 5)
        return p.returncode == 0

    # -- keeld

    def keel_config(self, services: list[dict], node: dict | None = None) -> dict:
        n = {"tunnel_source_v4": self.balancer.v4, "tunnel_source_v6": self.balancer.v6,
             "next_hop_mac": self.router.mac}
        n.update(node or {})
        return {"dataplane": self.plane.config(self), "node": n, "services": services}

    def service(self, name: str, family: int, port: int = 80, protocol: str = "tcp",
                forwarding: str = "ipip", scheduler: str = "maglev", ring_size: int = 65537,
                with_mac: bool = True, weights: list[int] | None = None) -> dict:
        reals = []
        for i, real in enumerate(self.reals):
            entry = {"address": real.v4 if family == 4 else real.v6,
                     "weight": weights[i] if weights else 100}
            if forwarding == "l2dsr" and with_mac:
                entry["mac"] = real.mac
            reals.append(entry)
        return {"name": name, "vip": self.vip(family), "port": port, "protocol": protocol,
                "forwarding": forwarding, "scheduler": scheduler, "ring_size": ring_size,
                "reals": reals}

    def write_config(self, config: dict, name: str = "keel.yaml") -> Path:
        path = self.tmp / name
        path.write_text(to_yaml(config) + "\n")
        return path

    def start_keeld(self, config: dict, name: str = "keel",
                    wait: Callable[[Keeld], None] | None = Keeld.wait_attached) -> Keeld:
        """A fresh keeld in a mount namespace of its own (Keeld.start), once
        its data plane is attached (WAIT None: at once). The plane is reset
        first, so what WAIT observes is this keeld's attach."""
        self.plane.reset(self)
        return Keeld.start(self, config, name, wait)

    @contextlib.contextmanager
    def keeld(self, config: dict, name: str = "keel"):
        # Ready, not only attached: keeld attaches its data plane before it
        # opens the control socket, so a keelctl right after the attach
        # could find no socket yet (the demo did once, in CI on a loaded box).
        k = self.start_keeld(config, name, wait=Keeld.wait_ready)
        try:
            yield k
        finally:
            k.stop()
            self.plane.reset(self)

    def router_forwarded(self) -> dict[int, int]:
        """Packets the router has forwarded so far, per family (kernel SNMP
        counters of the router's namespace). In ipip mode each client packet
        crosses the router twice (to the balancer, then encapsulated to the
        real); in l2dsr mode once; each reply once."""
        out = self.router.sh("cat /proc/net/snmp /proc/net/snmp6").stdout
        lines = out.splitlines()
        v4 = 0
        for i, line in enumerate(lines):
            if line.startswith("Ip: ") and i + 1 < len(lines) and not line.split()[1].isdigit():
                names, values = line.split(), lines[i + 1].split()
                v4 = int(values[names.index("ForwDatagrams")])
                break
        v6 = next(int(line.split()[1]) for line in lines
                  if line.startswith("Ip6OutForwDatagrams"))
        return {4: v4, 6: v6}

    def model_pick(self, service: dict, flows: list[dict]) -> list[str | None]:
        """The real tests/model/keel_model.py predicts for each flow, as a real
        name. Backend ids are list indexes (keeld's own ids are its business),
        mapped back through the service's real addresses."""
        model = HERE.parent / "model" / "keel_model.py"
        reals = [{"address": r["address"], "weight": r["weight"], "backend_id": i}
                 for i, r in enumerate(service["reals"])]
        doc = {"ring_size": service["ring_size"], "scheduler": service["scheduler"],
               "reals": reals,
               "flows": [{k: f[k] for k in ("src", "dst", "sport", "dport", "proto")}
                         for f in flows]}
        path = self.tmp / "model-input.json"
        path.write_text(json.dumps(doc))
        p = run([PYTHON, str(model), "pick", "--input", str(path)], timeout=120)
        ids = json.loads(p.stdout)["backend_ids"]
        by_addr = {(r.v4, r.v6): r.role for r in self.reals}
        names = []
        for bid in ids:
            if bid is None:
                names.append(None)
                continue
            addr = service["reals"][bid]["address"]
            names.append(next(n for (a4, a6), n in by_addr.items() if addr in (a4, a6)))
        return names

    def stats(self, strict: bool = True) -> dict | None:
        """The running keeld's `keelctl -o json stats`, or None when no keeld
        is running. A keeld that runs and does not answer fails the test
        (strict), or gives None (diagnostics after a failure)."""
        k = self._keeld
        if k is None or k.proc.poll() is not None:
            return None
        p = k.keelctl("-o", "json", "stats", check=False)
        if p.returncode != 0:
            assert not strict, f"keelctl stats failed ({p.returncode}): {p.stdout}{p.stderr}"
            return None
        return json.loads(p.stdout)

    def reasons(self, strict: bool = True) -> dict[str, int] | None:
        """Packets per verdict reason, summed over CPUs / worker lcores, as
        the running keeld reports them: the same for every data plane. None
        when no keeld is running (strict as stats())."""
        stats = self.stats(strict)
        if stats is None:
            return None
        return {name: int(c["packets"]) for name, c in stats["reasons"].items()}

    def worker_packets(self) -> dict[int, int] | None:
        """Packets each DPDK worker received from its port queue (stats field
        workers): {worker: packets}. None when no keeld runs or the data
        plane has no workers (XDP)."""
        stats = self.stats()
        workers = (stats or {}).get("workers") or []
        return {int(w["worker"]): int(w["rx_packets"]) for w in workers} or None

    def real_by_name(self, name: str) -> Host:
        return next(r for r in self.reals if r.role == name)

    # -- tear down

    def down(self):
        """Removes everything this lab made. Safe to call twice and after a
        partial up()."""
        if not self._up:
            return
        self._up = False
        for proc in list(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in list(self._procs):
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=3)
        self._procs.clear()
        with contextlib.suppress(Exception):
            self.decap_detach()
        # Anything still inside our namespaces was started by this lab (by a
        # command we ran there); end it by pid before deleting the namespace.
        for ns in self._namespaces:
            p = run(["ip", "netns", "pids", ns], check=False)
            for pid in p.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for ns in reversed(self._namespaces):
            run(["ip", "netns", "del", ns], check=False)
        self._namespaces.clear()
        cleanup = getattr(self.plane, "cleanup", None)
        if cleanup:
            cleanup(self)
        with contextlib.suppress(OSError):
            for f in self.tmp.iterdir():
                f.unlink()
            self.tmp.rmdir()

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()


# ---------------------------------------------------------------- self-check

def self_check(lab: Lab) -> None:
    """Checks the lab itself, without keel: routing, the servers, the DSR
    return path and XDP_PASS delivery. Raises LabError on the first problem."""
    for real in lab.reals:
        for dst in (real.v4, real.v6):
            if not lab.ping(lab.client, dst):
                raise LabError(f"client cannot ping {real.role} at {dst}")
    for dst in (lab.balancer.v4, lab.balancer.v6):
        if not lab.ping(lab.client, dst):
            raise LabError(f"client cannot ping the balancer at {dst}")
    # Native XDP on the balancer's veth: a trivial XDP_PASS must not change
    # what reaches the balancer's stack.
    obj = lab.build_dir / "bpf" / "xdp_pass.bpf.o"
    lab.balancer.run(["ip", "link", "set", "dev", lab.balancer.ifname, "xdpdrv",
                      "obj", str(obj), "sec", "xdp"])
    try:
        if lab.balancer_prog_id() is None:
            raise LabError("xdp_pass did not attach to the balancer's interface")
        for dst in (lab.balancer.v4, lab.balancer.v6):
            if not lab.ping(lab.client, dst):
                raise LabError(f"with XDP_PASS attached, client cannot ping {dst}")
    finally:
        lab.balancer.run(["ip", "link", "set", "dev", lab.balancer.ifname, "xdp", "off"],
                         check=False)
    # DSR return path: point the router's VIP route at one real directly. The
    # real answers from the VIP on its lo, back through the router.
    target = lab.reals[-1]
    lab.router.sh(f"ip route replace {VIP4}/32 via {target.v4}\n"
                  f"ip -6 route replace {VIP6}/128 via {target.v6}")
    try:
        for fam in (4, 6):
            for proto in ("tcp", "udp"):
                got = lab.flows(proto, lab.vip(fam), 80, count=3)
                bad = [f for f in got if f.get("real") != target.role]
                if bad:
                    raise LabError(f"direct VIP {proto}/v{fam} to {target.role} failed: {bad}")
    finally:
        lab.router.sh(f"ip route replace {VIP4}/32 via {lab.balancer.v4}\n"
                      f"ip -6 route replace {VIP6}/128 via {lab.balancer.v6}")


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["selfcheck", "up"],
                    help="selfcheck: build, check, tear down; up: build and wait for Ctrl-C")
    ap.add_argument("--build", default=str(HERE.parent.parent / "build"),
                    help="meson build dir (for xdp_pass.bpf.o, keeld, keel-decap)")
    ap.add_argument("--dataplane", default="xdp", choices=sorted(DATAPLANES))
    ap.add_argument("--prefix", default=None)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # A shell starts background jobs with SIGINT ignored; restore it so
    # Ctrl-C (or kill -INT) always tears the lab down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kw = {"prefix": args.prefix} if args.prefix else {}
    with Lab(args.build, args.dataplane, **kw) as lab:
        lab.start_servers(tcp_ports=(80, 8080), udp_ports=(80, 8080))
        if args.command == "selfcheck":
            self_check(lab)
            print("lab self-check OK")
            return 0
        print(f"lab {lab.prefix} is up; namespaces:")
        for h in [lab.switch, *lab.hosts]:
            print(f"  {h.ns:<24} {h.role:<9} {h.v4:<14} {h.v6}")
        print(f"VIPs {VIP4} {VIP6}; config dir {lab.tmp}; Ctrl-C tears it down")
        with contextlib.suppress(KeyboardInterrupt):
            for _ in range(24 * 3600):  # bounded: one day
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
