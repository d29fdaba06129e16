"""Boot, track and tear down the VMs of one run; all state lives in the state dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra.vm.accel import Accel, accel_override, boot_outcome, choose_accel, kvm_usable
from infra.image.guest_files import GUEST_USER
from infra.image.arch import NATIVE, host_cpu
from infra.image.base import Image
from infra.vm.image import Recipe, build_image
from infra.vm.qemu import VMFiles, qemu_argv
from infra.vm.spec import VMSpec
from infra.vm.ssh import generate_key, known_hosts_line, ssh_argv, ssh_banner

# A KVM guest that stays silent this long on its serial console is taken as hung.
KVM_CONSOLE_TIMEOUT = 15.0
KVM_SSH_TIMEOUT = 90.0
# TCG on two host cores, several guests booting at once; a host shared with other
# heavy work can need more: $GIGAFACTORY_BOOT_TIMEOUT (seconds).
TCG_SSH_TIMEOUT = 600.0
BOOT_TIMEOUT_ENV = "GIGAFACTORY_BOOT_TIMEOUT"
LOGIN_TIMEOUT = 60.0


class LauncherError(RuntimeError):
    """The run could not be brought up or torn down; the message says what to look at."""


@dataclass(frozen=True)
class RunningVM:
    """How to reach one booted VM over SSH with checked host keys."""

    name: str
    ssh_port: int
    user: str
    key_path: Path
    known_hosts: Path
    serial_log: Path
    ssh_host: str = "127.0.0.1"

    def ssh(self, *command: str) -> list[str]:
        """argv running `command` on the VM."""
        return ssh_argv(self.ssh_host, self.ssh_port, self.user, self.key_path,
                        self.known_hosts, list(command))


@dataclass(frozen=True)
class VMStatus:
    name: str
    pid: int | None
    alive: bool
    ssh_port: int


@dataclass
class _VMState:
    name: str
    ssh_port: int
    pidfile: str
    serial_log: str
    overlay: str | None          # None: a disk-less VM
    pid: int | None = None


@dataclass
class _RunState:
    accel: str | None = None
    sockets_dir: str | None = None
    switches: dict[str, int] = field(default_factory=dict)
    vms: dict[str, _VMState] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _boot_timeout(accel: Accel) -> float:
    override = os.environ.get(BOOT_TIMEOUT_ENV)
    if override:
        try:
            return float(override)
        except ValueError:
            raise LauncherError(f"{BOOT_TIMEOUT_ENV}={override!r}: give seconds") from None
    return KVM_SSH_TIMEOUT if accel is Accel.KVM else TCG_SSH_TIMEOUT


def _read_pid(pidfile: Path) -> int | None:
    """The pid in `pidfile`, or None while it is missing or still being written."""
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _process_matches(pid: int | None, marker: str) -> bool:
    """True when `pid` is alive and its command line contains `marker` (not a recycled pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _stop(pid: int | None, marker: str, grace: float = 10.0) -> None:
    if not _process_matches(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _process_matches(pid, marker):
            return
        time.sleep(0.2)
    if _process_matches(pid, marker):
        os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]


class Launcher:
    """Brings a list of VMSpec up as QEMU guests and down again, from any process."""

    def __init__(self, state_dir: Path, image: Image | None = None, recipe: Recipe = Recipe()):
        self.state_dir = Path(state_dir).resolve()
        self.image = image
        self.recipe = recipe

    # -- state ---------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def key_path(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "ssh" / "known_hosts"

    @property
    def _accel_file(self) -> Path:
        return self.state_dir / "accel"

    def _load(self) -> _RunState:
        if not self._state_file.exists():
            return _RunState()
        raw = json.loads(self._state_file.read_text())
        vms = {name: _VMState(**vm) for name, vm in raw.pop("vms", {}).items()}
        return _RunState(vms=vms, **raw)

    def _save(self, state: _RunState) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self._state_file)

    def _vm_dir(self, name: str) -> Path:
        return self.state_dir / "vms" / name

    def _running(self, vm: _VMState) -> RunningVM:
        return RunningVM(vm.name, vm.ssh_port, GUEST_USER, self.key_path, self.known_hosts,
                         Path(vm.serial_log))

    # -- up ------------------------------------------------------------------------------
    def up(self, specs: list[VMSpec], images: Mapping[str, Image] | None = None) -> list[RunningVM]:
        """Boot every spec and return once each answers SSH with its injected host key. A VM named in ``images``
        boots from that image (its node type's, infra.image); the others from the launcher's (the bare recipe), but
        a disk-less one (``boot: network``) from whatever its boot NIC's segment serves."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if any(s.alive for s in self.status()):
            raise LauncherError(f"VMs of {self.state_dir} are still running: run 'down' first")
        self.down()  # what a crashed run left: switches, sockets, overlays
        images = dict(images or {})
        bare = [s for s in specs if s.name not in images and s.boot == "disk"]
        image = (self.image or build_image(self.recipe)) if bare else None
        generate_key(self.key_path, "gigafactory-run")
        state = _RunState()
        self._save(state)
        try:
            self._start_switches(state, specs)
            files = {spec.name: self._prepare_vm(state, spec, images.get(spec.name) or image) for spec in specs}
            self._write_known_hosts(state)
            cached = Accel(self._accel_file.read_text().strip()) if self._accel_file.exists() \
                else accel_override()
            first = specs[0]

            def probe_kvm() -> bool:
                try:
                    self._boot(state, first, files[first.name], Accel.KVM)
                except LauncherError as exc:
                    _reset_log(Path(state.vms[first.name].serial_log), str(exc))
                    return False
                outcome = self._wait_banner(state.vms[first.name], KVM_SSH_TIMEOUT,
                                            KVM_CONSOLE_TIMEOUT)
                if outcome != "ready":
                    self._kill_vm(state.vms[first.name])
                    _reset_log(Path(state.vms[first.name].serial_log), outcome)
                return outcome == "ready"

            foreign = any(f.arch != host_cpu() for f in files.values())
            accel, probed = choose_accel(cached, kvm_usable(), probe_kvm, foreign=foreign)
            state.accel = accel.value
            if not foreign:                 # a foreign guest's TCG says nothing about this machine's KVM
                self._accel_file.write_text(accel.value + "\n")
            already_up = {first.name} if probed and accel is Accel.KVM else set()
            for spec in specs:
                if spec.name not in already_up:
                    self._boot(state, spec, files[spec.name], accel)
            return self._wait_ready(state, specs, accel)
        except BaseException:
            self.down()
            raise

    def add(self, specs: list[VMSpec], images: Mapping[str, Image] | None = None) -> list[RunningVM]:
        """Boot more VMs into the running run (its segments, a new one with its own switch; its accelerator) and
        return once each answers SSH: for a VM that needs what the first ones serve, such as a disk-less VM booting
        from a boot server among them. On failure the added VMs are stopped; the others keep running."""
        state = self._load()
        if not state.vms or not all(s.alive for s in self.status()) or state.accel is None:
            raise LauncherError(f"no running VMs in {self.state_dir}: run 'up' first")
        taken = sorted({s.name for s in specs} & set(state.vms))
        if taken:
            raise LauncherError(f"VM {', '.join(taken)} is already in the run of {self.state_dir}")
        images = dict(images or {})
        bare = [s for s in specs if s.name not in images and s.boot == "disk"]
        image = (self.image or build_image(self.recipe)) if bare else None
        accel = Accel(state.accel)
        try:
            self._start_switches(state, specs)
            files = {spec.name: self._prepare_vm(state, spec, images.get(spec.name) or image) for spec in specs}
            self._write_known_hosts(state)
            for spec in specs:
                self._boot(state, spec, files[spec.name], accel)
            return self._wait_ready(state, specs, accel)
        except BaseException:
            for spec in specs:
                vm = state.vms.pop(spec.name, None)
                if vm is not None:
                    self._kill_vm(vm)
                    if vm.overlay:
                        Path(vm.overlay).unlink(missing_ok=True)
            self._save(state)
            raise

    def _wait_ready(self, state: _RunState, specs: list[VMSpec], accel: Accel) -> list[RunningVM]:
        timeout = _boot_timeout(accel)
        for spec in specs:
            outcome = self._wait_banner(state.vms[spec.name], timeout, None)
            if outcome != "ready":
                raise LauncherError(
                    f"VM {spec.name} under {accel.value}: {outcome} before SSH came up; "
                    f"see {state.vms[spec.name].serial_log}")
        running = [self._running(state.vms[spec.name]) for spec in specs]
        for vm in running:
            self._check_login(vm)
        return running

    def _start_switches(self, state: _RunState, specs: list[VMSpec]) -> None:
        """A switch per segment the specs use that the run has none for yet."""
        segments = sorted({nic.segment for spec in specs for nic in spec.nics} - set(state.switches))
        if not segments:
            return
        # Unix socket paths are limited to 108 bytes; the state dir may be deep.
        state.sockets_dir = state.sockets_dir or tempfile.mkdtemp(prefix="gf-vde-")
        self._save(state)
        for segment in segments:
            sock = Path(state.sockets_dir) / segment
            pidfile = Path(state.sockets_dir) / f"{segment}.pid"
            try:
                subprocess.run(["vde_switch", "--sock", str(sock), "--daemon",
                                "--pidfile", str(pidfile)], check=True,
                               stdout=subprocess.DEVNULL)
            except FileNotFoundError:
                raise LauncherError("vde_switch not found: apt-get install vde2") from None
            deadline = time.monotonic() + 10
            while (pid := _read_pid(pidfile)) is None or not (sock / "ctl").exists():
                if time.monotonic() > deadline:
                    raise LauncherError(f"vde_switch for segment {segment} did not start")
                time.sleep(0.1)
            state.switches[segment] = pid
            self._save(state)

    def _prepare_vm(self, state: _RunState, spec: VMSpec, image: Image | None) -> VMFiles:
        vm_dir = self._vm_dir(spec.name)
        if vm_dir.exists():
            shutil.rmtree(vm_dir)
        vm_dir.mkdir(parents=True)
        host_key = generate_key(vm_dir / "ssh_host_ed25519_key", f"root@{spec.name}")
        nics = vm_dir / "nics.json"
        nics.write_text(json.dumps([
            {"segment": n.segment, "interface": n.interface, "mac": spec.mac_of(n),
             "address": str(n.address) if n.address else None} for n in spec.nics], indent=2))
        kernel = initrd = overlay = None          # a disk-less VM: the firmware boots from its NIC
        if spec.boot == "disk":
            if image is None:
                raise LauncherError(f"VM {spec.name}: no image to boot from")
            kernel, initrd, overlay = image.kernel, image.initrd, vm_dir / "disk.qcow2"
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", image.disk_format,
                            "-b", str(image.disk), str(overlay)], check=True)
        files = VMFiles(
            kernel=kernel, initrd=initrd, overlay=overlay,
            serial_log=vm_dir / "serial.log", pidfile=vm_dir / "qemu.pid",
            fw_cfg={"host_key": host_key, "host_key_pub": host_key.with_suffix(".pub"),
                    "authorized_keys": self.key_path.with_suffix(".pub"), "nics": nics},
            arch=image.arch if image is not None and spec.boot == "disk" else NATIVE,
        )
        state.vms[spec.name] = _VMState(spec.name, _free_port(), str(files.pidfile),
                                        str(files.serial_log), str(overlay) if overlay else None)
        self._save(state)
        return files

    def _write_known_hosts(self, state: _RunState) -> None:
        lines = []
        for vm in state.vms.values():
            pub = (self._vm_dir(vm.name) / "ssh_host_ed25519_key.pub").read_text()
            lines.append(known_hosts_line("127.0.0.1", vm.ssh_port, pub))
        self.known_hosts.write_text("".join(lines))

    def _boot(self, state: _RunState, spec: VMSpec, files: VMFiles, accel: Accel) -> None:
        vm = state.vms[spec.name]
        sockets = {seg: Path(state.sockets_dir or "") / seg for seg in state.switches}
        argv = qemu_argv(spec, files, accel, vm.ssh_port, sockets)
        (self._vm_dir(spec.name) / "qemu.argv").write_text(json.dumps(argv, indent=1))
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise LauncherError(f"qemu for {spec.name} failed: {result.stderr.strip()}")
        vm.pid = _read_pid(files.pidfile)
        self._save(state)

    def _wait_banner(self, vm: _VMState, timeout: float, console_timeout: float | None) -> str:
        """'ready', or why not: 'exited', 'silent console', 'timeout'."""
        start = time.monotonic()
        log = Path(vm.serial_log)
        while True:
            outcome = boot_outcome(
                alive=_process_matches(vm.pid, vm.pidfile),
                ssh_ready=ssh_banner("127.0.0.1", vm.ssh_port),
                console_bytes=log.stat().st_size if log.exists() else 0,
                elapsed=time.monotonic() - start,
                timeout=timeout,
                console_timeout=console_timeout,
            )
            if outcome is not None:
                return outcome
            time.sleep(1.0)

    def _check_login(self, vm: RunningVM) -> None:
        deadline = time.monotonic() + LOGIN_TIMEOUT
        while True:
            result = subprocess.run(vm.ssh("true"), capture_output=True, text=True)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LauncherError(f"ssh to {vm.name} failed: {result.stderr.strip()}")
            time.sleep(2)

    # -- down / status -------------------------------------------------------------------
    def _kill_vm(self, vm: _VMState) -> None:
        _stop(vm.pid, vm.pidfile)

    def down(self) -> None:
        """Stop every VM and switch of the run and drop disks and keys; serial logs stay."""
        state = self._load()
        for vm in state.vms.values():
            self._kill_vm(vm)
            if vm.overlay:
                Path(vm.overlay).unlink(missing_ok=True)
            for key in self._vm_dir(vm.name).glob("ssh_host_*"):
                key.unlink()
        switches = dict(state.switches)
        if state.sockets_dir:  # also a switch started but not yet recorded
            for pidfile in Path(state.sockets_dir).glob("*.pid"):
                switches.setdefault(pidfile.stem, _read_pid(pidfile) or 0)
        for segment, pid in switches.items():
            _stop(pid, f"{state.sockets_dir}/{segment}")
        if state.sockets_dir:
            shutil.rmtree(state.sockets_dir, ignore_errors=True)
        for path in (self.key_path, self.key_path.with_suffix(".pub"), self._state_file):
            path.unlink(missing_ok=True)

    def status(self) -> list[VMStatus]:
        state = self._load()
        return [VMStatus(vm.name, vm.pid, _process_matches(vm.pid, vm.pidfile), vm.ssh_port)
                for vm in state.vms.values()]

    def running(self) -> list[RunningVM]:
        """The run's VMs as recorded (for a process other than the one that ran `up`)."""
        return [self._running(vm) for vm in self._load().vms.values()]


def _reset_log(log: Path, outcome: str) -> None:
    """Keep the failed KVM probe's console for diagnosis; the TCG boot starts a fresh log."""
    probe_log = log.with_name("serial.kvm-probe.log")
    if log.exists():
        log.rename(probe_log)
    with probe_log.open("a") as out:
        out.write(f"\n[launcher] KVM probe: {outcome}\n")
