"""The QEMU command line for one VM (pure: paths in, argv out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infra.vm.accel import Accel
from infra.image.guest_files import FW_CFG_PREFIX
from infra.vm.spec import VMSpec

DISK_SLOT = 0x2
MGMT_SLOT = 0x3
RNG_SLOT = 0x1E
# Drivers for emulated hardware no test uses; under TCG each costs seconds of boot.
_SKIPPED_MODULES = "kvm,kvm_amd,kvm_intel,iTCO_wdt,iTCO_vendor_support,powernow_k8,pcspkr"
KERNEL_ARGS = (
    "root=/dev/vda rw console=ttyS0,115200 panic=-1 net.ifnames=1 "
    f"modprobe.blacklist={_SKIPPED_MODULES}"
)


@dataclass(frozen=True)
class VMFiles:
    """Where one VM's run-time files live (a disk-less VM has no kernel, initrd or overlay)."""

    kernel: Path | None
    initrd: Path | None
    overlay: Path | None
    serial_log: Path
    pidfile: Path
    fw_cfg: dict[str, Path] = field(default_factory=dict)


def _nic_device(spec: VMSpec, netdev: str, mac: str, slot: int, boot: bool) -> str:
    """A virtio NIC. On a disk-less VM only the boot NIC carries an option ROM (iPXE) and a boot index; every other
    NIC has none (``romfile=``), so the firmware never tries the SSH NIC's user network or a private segment."""
    device = f"virtio-net-pci,netdev={netdev},mac={mac},addr={slot:#x}"
    if spec.boot == "network":
        device += ",bootindex=1" if boot else ",romfile="
    return device


def boot_argv(spec: VMSpec, files: VMFiles) -> list[str]:
    """What the VM boots: the image's kernel, initrd and overlay disk; or, disk-less, the firmware's network boot
    (SeaBIOS with ``strict=on``: the boot NIC's iPXE or nothing), its console text on the serial port (sgabios)."""
    if spec.boot == "network":
        return ["-boot", "strict=on", "-device", "sga"]
    if files.kernel is None or files.initrd is None or files.overlay is None:
        raise ValueError(f"VM {spec.name!r} boots from its disk: kernel, initrd and overlay are needed")
    return [
        "-kernel", str(files.kernel), "-initrd", str(files.initrd), "-append", KERNEL_ARGS,
        # The overlay is the VM's own throw-away layer over the cached image: cache=unsafe lets the host ignore
        # the guest's flushes, which under TCG otherwise dominate every dpkg run (a host crash loses only the VM).
        "-drive", f"if=none,id=disk0,format=qcow2,cache=unsafe,file={files.overlay}",
        "-device", f"virtio-blk-pci,drive=disk0,addr={DISK_SLOT:#x}",
    ]


def qemu_argv(
    spec: VMSpec,
    files: VMFiles,
    accel: Accel,
    ssh_port: int,
    segment_sockets: dict[str, Path],
    binary: str = "qemu-system-x86_64",
) -> list[str]:
    """Argv that boots `spec` daemonized, SSH forwarded on 127.0.0.1:`ssh_port` only."""
    cpu = ["-accel", "kvm", "-cpu", "host"] if accel is Accel.KVM else [
        "-accel", "tcg,thread=multi", "-cpu", "max"]
    argv = [
        binary, "-name", spec.name, "-machine", "q35", *cpu,
        "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
        "-nodefaults", "-display", "none", "-vga", "none",
        # Either a reboot ends QEMU, or it restarts the guest and only a panic (reported by the pvpanic device
        # once its driver loaded; earlier, the kernel's panic=-1 restarts it) ends QEMU.
        *(["-device", "pvpanic", "-action", "panic=exit-failure"] if spec.reboot else ["-no-reboot"]),
        *boot_argv(spec, files),
        "-netdev", f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", _nic_device(spec, "mgmt", spec.mgmt_mac, MGMT_SLOT, boot=False),
    ]
    for index, nic in enumerate(spec.nics):
        argv += [
            "-netdev", f"vde,id=nic{index},sock={segment_sockets[nic.segment]}",
            "-device", _nic_device(spec, f"nic{index}", spec.mac_of(nic), nic.slot,
                                   boot=nic.interface == spec.boot_interface),
        ]
    argv += ["-device", f"virtio-rng-pci,addr={RNG_SLOT:#x}"]
    argv += ["-fw_cfg", f"name={FW_CFG_PREFIX}/hostname,string={spec.name}"]
    for name, path in sorted(files.fw_cfg.items()):
        argv += ["-fw_cfg", f"name={FW_CFG_PREFIX}/{name},file={path}"]
    argv += [
        "-serial", f"file:{files.serial_log}", "-monitor", "none",
        "-pidfile", str(files.pidfile), "-daemonize",
    ]
    return argv
