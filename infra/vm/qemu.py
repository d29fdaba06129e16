"""The QEMU command line for one VM (pure: paths in, argv out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infra.vm.accel import Accel
from infra.image.arch import ARCHITECTURES, NATIVE, host_cpu
from infra.image.guest_files import FW_CFG_PREFIX
from infra.vm.spec import VMSpec

DISK_SLOT = 0x2
MGMT_SLOT = 0x3
RNG_SLOT = 0x1E
# Drivers for emulated hardware no test uses; under TCG each costs seconds of boot.
_SKIPPED_MODULES = "kvm,kvm_amd,kvm_intel,iTCO_wdt,iTCO_vendor_support,powernow_k8,pcspkr"


def kernel_args(arch: str = NATIVE) -> str:
    """The kernel command line of a VM booted from its disk: the root, and the console of the architecture's machine."""
    return (f"root=/dev/vda rw console={ARCHITECTURES[arch].console},115200 panic=-1 net.ifnames=1 "
            f"modprobe.blacklist={_SKIPPED_MODULES}")


KERNEL_ARGS = kernel_args()


@dataclass(frozen=True)
class Machine:
    """QEMU's machine for an architecture: its program, machine type, the CPU under TCG, firmware, panic device."""
    binary: str
    machine: str
    tcg_cpu: str
    firmware: tuple[str, ...]
    panic_device: str


# aarch64: QEMU's virt board with UEFI (edk2, Debian's qemu-efi-aarch64), which loads -kernel from fw_cfg as an EFI
# stub; pauth-impdef: the CPU's pointer authentication by QEMU's own cheap algorithm, several times faster under TCG.
AARCH64_FIRMWARE = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"
MACHINES: dict[str, Machine] = {
    "x86_64": Machine("qemu-system-x86_64", "q35", "max", (), "pvpanic"),
    "aarch64": Machine("qemu-system-aarch64", "virt", "max,pauth-impdef=on", ("-bios", AARCH64_FIRMWARE),
                       "pvpanic-pci,addr=0x1"),
}


@dataclass(frozen=True)
class VMFiles:
    """Where one VM's run-time files live (a disk-less VM has no kernel, initrd or overlay)."""

    kernel: Path | None
    initrd: Path | None
    overlay: Path | None
    serial_log: Path
    pidfile: Path
    fw_cfg: dict[str, Path] = field(default_factory=dict)
    arch: str = NATIVE          # the image's cpu.arch: which QEMU machine runs it


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
        if files.arch != NATIVE:
            raise ValueError(f"VM {spec.name!r}: the test bed boots {files.arch} VMs from their disk only, not the network")
        return ["-boot", "strict=on", "-device", "sga"]
    if files.kernel is None or files.initrd is None or files.overlay is None:
        raise ValueError(f"VM {spec.name!r} boots from its disk: kernel, initrd and overlay are needed")
    return [
        *MACHINES[files.arch].firmware,
        "-kernel", str(files.kernel), "-initrd", str(files.initrd), "-append", kernel_args(files.arch),
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
) -> list[str]:
    """Argv that boots `spec` daemonized, SSH forwarded on 127.0.0.1:`ssh_port` only, on the QEMU machine of its
    image's architecture (``files.arch``; a foreign one's under TCG, whatever ``accel`` says: infra/vm/accel.py)."""
    machine = MACHINES[files.arch]
    cpu = ["-accel", "kvm", "-cpu", "host"] if accel is Accel.KVM and files.arch == host_cpu() else [
        "-accel", "tcg,thread=multi", "-cpu", machine.tcg_cpu]
    argv = [
        machine.binary, "-name", spec.name, "-machine", machine.machine, *cpu,
        "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
        "-nodefaults", "-display", "none", "-vga", "none",
        # Either a reboot ends QEMU, or it restarts the guest and only a panic (reported by the pvpanic device
        # once its driver loaded; earlier, the kernel's panic=-1 restarts it) ends QEMU.
        *(["-device", machine.panic_device, "-action", "panic=exit-failure"] if spec.reboot else ["-no-reboot"]),
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
