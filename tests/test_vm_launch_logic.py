"""KVM -> TCG fallback decisions and the QEMU command line, without booting anything."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from infra.vm.accel import ACCEL_ENV, Accel, accel_override, boot_outcome, choose_accel, kvm_usable
from infra.vm.qemu import VMFiles, qemu_argv
from infra.vm.spec import parse_specs


class FakeProbe:
    def __init__(self, boots: bool):
        self.boots = boots
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.boots


def test_kvm_is_kept_when_the_probe_guest_comes_up() -> None:
    probe = FakeProbe(boots=True)
    assert choose_accel(None, kvm_available=True, probe_kvm=probe) == (Accel.KVM, True)
    assert probe.calls == 1


def test_hung_kvm_guest_falls_back_to_tcg() -> None:
    probe = FakeProbe(boots=False)
    assert choose_accel(None, kvm_available=True, probe_kvm=probe) == (Accel.TCG, True)


def test_no_kvm_device_means_tcg_without_probing() -> None:
    probe = FakeProbe(boots=True)
    assert choose_accel(None, kvm_available=False, probe_kvm=probe) == (Accel.TCG, False)
    assert probe.calls == 0


@pytest.mark.parametrize("cached", [Accel.KVM, Accel.TCG])
def test_cached_verdict_skips_the_probe(cached: Accel) -> None:
    probe = FakeProbe(boots=cached is Accel.KVM)
    assert choose_accel(cached, kvm_available=True, probe_kvm=probe) == (cached, False)
    assert probe.calls == 0


def test_kvm_usable_is_false_for_a_missing_device(tmp_path: Path) -> None:
    assert not kvm_usable(tmp_path / "kvm")


def test_override_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ACCEL_ENV, "TCG")
    assert accel_override() is Accel.TCG
    monkeypatch.setenv(ACCEL_ENV, "hvf")
    with pytest.raises(ValueError, match=ACCEL_ENV):
        accel_override()


@pytest.mark.parametrize(
    ("alive", "ssh", "console", "elapsed", "console_timeout", "expected"),
    [
        (True, True, 0, 1.0, 15.0, "ready"),
        (False, False, 500, 1.0, 15.0, "exited"),
        (True, False, 0, 16.0, 15.0, "silent console"),  # the KVM hang seen on these hosts
        (True, False, 500, 16.0, 15.0, None),  # printing: keep waiting for SSH
        (True, False, 0, 16.0, None, None),  # TCG: no console deadline
        (True, False, 500, 91.0, 15.0, "timeout"),
    ],
)
def test_boot_outcome(alive, ssh, console, elapsed, console_timeout, expected) -> None:
    assert boot_outcome(alive, ssh, console, elapsed, 90.0, console_timeout) == expected


SPEC = parse_specs([{"name": "node-a", "cpus": 2, "memory_mb": 1536, "nics": [
    {"segment": "fabric", "interface": "enp0s4", "address": "10.77.0.1/24"},
    {"segment": "storage", "interface": "enp0s7"}]}])[0]
FILES = VMFiles(kernel=Path("/c/vmlinuz"), initrd=Path("/c/initrd.img"),
                overlay=Path("/s/disk.qcow2"), serial_log=Path("/s/serial.log"),
                pidfile=Path("/s/qemu.pid"), fw_cfg={"host_key": Path("/s/hk")})
SOCKETS = {"fabric": Path("/tmp/gf/fabric"), "storage": Path("/tmp/gf/storage")}


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_argv_boots_the_kernel_directly_from_the_overlay() -> None:
    argv = qemu_argv(SPEC, FILES, Accel.TCG, 2222, SOCKETS)
    assert _pairs(argv, "-kernel") == ["/c/vmlinuz"] and _pairs(argv, "-initrd") == ["/c/initrd.img"]
    assert _pairs(argv, "-append")[0].startswith("root=/dev/vda ")
    assert "file=/s/disk.qcow2" in _pairs(argv, "-drive")[0]
    assert (_pairs(argv, "-smp"), _pairs(argv, "-m")) == (["2"], ["1536"])
    assert _pairs(argv, "-serial") == ["file:/s/serial.log"]
    assert "-daemonize" in argv and _pairs(argv, "-pidfile") == ["/s/qemu.pid"]


def test_a_vm_that_may_reboot_restarts_in_place_and_a_panic_still_ends_qemu() -> None:
    argv = qemu_argv(SPEC, FILES, Accel.TCG, 2222, SOCKETS)
    assert "-no-reboot" in argv and "-action" not in argv
    argv = qemu_argv(SPEC.model_copy(update={"reboot": True}), FILES, Accel.TCG, 2222, SOCKETS)
    assert "-no-reboot" not in argv
    assert "pvpanic" in _pairs(argv, "-device") and _pairs(argv, "-action") == ["panic=exit-failure"]


def test_a_sites_hosts_reboot_in_place() -> None:
    from infra.plan import build_plan
    from infra.site import load_site
    from infra.vm.site import specs_for_site
    from conftest import DEMO
    site = load_site(str(DEMO))
    assert {s.reboot for s in specs_for_site(site, build_plan(site, str(DEMO)))} == {True}


def test_ssh_is_forwarded_on_loopback_only() -> None:
    argv = qemu_argv(SPEC, FILES, Accel.TCG, 2222, SOCKETS)
    user = [n for n in _pairs(argv, "-netdev") if n.startswith("user,")]
    assert user == ["user,id=mgmt,hostfwd=tcp:127.0.0.1:2222-:22"]


def test_private_nics_sit_on_their_segment_at_the_interface_slot() -> None:
    argv = qemu_argv(SPEC, FILES, Accel.TCG, 2222, SOCKETS)
    netdevs = _pairs(argv, "-netdev")
    devices = _pairs(argv, "-device")
    assert "vde,id=nic0,sock=/tmp/gf/fabric" in netdevs
    assert "vde,id=nic1,sock=/tmp/gf/storage" in netdevs
    assert f"virtio-net-pci,netdev=nic0,mac={SPEC.mac_of(SPEC.nics[0])},addr=0x4" in devices
    assert f"virtio-net-pci,netdev=nic1,mac={SPEC.mac_of(SPEC.nics[1])},addr=0x7" in devices
    slots = [d.rsplit("addr=", 1)[1] for d in devices if "addr=" in d]
    assert len(slots) == len(set(slots))  # no two devices on one PCI slot


def test_identity_reaches_the_guest_through_fw_cfg() -> None:
    fw_cfg = _pairs(qemu_argv(SPEC, FILES, Accel.TCG, 2222, SOCKETS), "-fw_cfg")
    assert "name=opt/gigafactory/hostname,string=node-a" in fw_cfg
    assert "name=opt/gigafactory/host_key,file=/s/hk" in fw_cfg


@pytest.mark.parametrize(("accel", "cpu"), [(Accel.KVM, "host"), (Accel.TCG, "max")])
def test_accelerator_selects_cpu_model(accel: Accel, cpu: str) -> None:
    argv = qemu_argv(SPEC, FILES, accel, 2222, SOCKETS)
    assert _pairs(argv, "-accel")[0].split(",")[0] == accel.value
    assert _pairs(argv, "-cpu") == [cpu]


def test_image_build_commands_write_to_stderr_never_to_stdout(capfd):
    """``python -m infra.cli.vm up`` prints its JSON on stdout; a cold image build must not mix its log into it."""
    from infra.image.base import _run
    _run(["echo", "building"])
    out, err = capfd.readouterr()
    assert out == "" and "building" in err


DISKLESS = SPEC.model_copy(update={"boot": "network", "boot_interface": "enp0s4"})
NO_DISK = VMFiles(kernel=None, initrd=None, overlay=None, serial_log=Path("/s/serial.log"),
                  pidfile=Path("/s/qemu.pid"), fw_cfg={"host_key": Path("/s/hk"), "nics": Path("/s/nics.json")})


def test_a_diskless_vm_boots_ipxe_from_its_boot_nic_only() -> None:
    argv = qemu_argv(DISKLESS, NO_DISK, Accel.TCG, 2222, SOCKETS)
    assert not {"-kernel", "-initrd", "-append", "-drive"} & set(argv)
    devices = _pairs(argv, "-device")
    assert not [d for d in devices if d.startswith("virtio-blk")]
    nics = [d for d in devices if d.startswith("virtio-net-pci")]
    booting = [d for d in nics if "bootindex=" in d]
    # the boot NIC keeps QEMU's iPXE ROM; the SSH NIC (user network) and the other segment's have none
    assert booting == [f"virtio-net-pci,netdev=nic0,mac={SPEC.mac_of(SPEC.nics[0])},addr=0x4,bootindex=1"]
    assert all(d.endswith(",romfile=") for d in nics if d not in booting) and len(nics) == 3
    assert _pairs(argv, "-boot") == ["strict=on"]


def test_a_diskless_vm_keeps_its_identity_through_fw_cfg() -> None:
    fw_cfg = _pairs(qemu_argv(DISKLESS, NO_DISK, Accel.TCG, 2222, SOCKETS), "-fw_cfg")
    assert "name=opt/gigafactory/hostname,string=node-a" in fw_cfg
    assert {"name=opt/gigafactory/host_key,file=/s/hk", "name=opt/gigafactory/nics,file=/s/nics.json"} <= set(fw_cfg)


def test_a_disk_vm_has_no_boot_order_or_rom_settings() -> None:
    argv = qemu_argv(SPEC, FILES, Accel.TCG, 2222, SOCKETS)
    assert "-boot" not in argv
    assert not [d for d in _pairs(argv, "-device") if "bootindex" in d or "romfile" in d]
    with pytest.raises(ValueError, match="kernel, initrd and overlay"):
        qemu_argv(SPEC, NO_DISK, Accel.TCG, 2222, SOCKETS)


def _demo_with_macs(tmp_path: Path) -> Path:
    import yaml
    from conftest import DEMO
    data = yaml.safe_load(DEMO.read_text())
    data["provisioning"]["images"] = {"server": "ctl01"}
    data["pools"][1]["macs"] = {"node02": "52:54:00:6e:0d:02"}
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_sites_declared_mac_is_on_the_management_nic_and_a_diskless_host_boots_from_it(tmp_path: Path) -> None:
    from infra.plan import build_plan
    from infra.site import load_site
    from infra.vm.site import specs_for_site
    path = _demo_with_macs(tmp_path)
    site = load_site(str(path))
    specs = {s.name: s for s in specs_for_site(site, build_plan(site, str(path)), network_boot=["node02"])}
    node02 = specs["node02"]
    assert (node02.boot, node02.boot_interface) == ("network", "enp0s4")
    assert node02.boot_nic.segment == "management" and node02.mac_of(node02.boot_nic) == "52:54:00:6e:0d:02"
    assert (specs["node01"].boot, specs["ctl01"].boot) == ("disk", "disk")
    assert specs["node01"].nics[0].mac is None          # no declared MAC: a derived one


def test_a_diskless_host_without_a_declared_mac_is_refused(tmp_path: Path) -> None:
    from infra.plan import build_plan
    from infra.site import load_site
    from infra.vm.site import specs_for_site
    path = _demo_with_macs(tmp_path)
    site = load_site(str(path))
    with pytest.raises(ValueError, match="node01: no boot MAC declared in pools"):
        specs_for_site(site, build_plan(site, str(path)), network_boot=["node01"])


def test_adding_vms_needs_a_running_run(tmp_path: Path) -> None:
    from infra.vm.launcher import Launcher, LauncherError
    with pytest.raises(LauncherError, match="no running VMs .* run 'up' first"):
        Launcher(tmp_path).add([DISKLESS])


GRACE = dataclasses.replace(FILES, arch="aarch64")


@pytest.mark.parametrize("accel", [Accel.KVM, Accel.TCG])
def test_an_aarch64_image_boots_on_qemus_virt_board_under_uefi_with_its_console(accel: Accel) -> None:
    """An arm64 image (Grace's node type) boots under qemu-system-aarch64's virt board, edk2 loading the image's
    kernel, console on the PL011 (ttyAMA0), under TCG even when the run's accelerator is KVM (an x86_64 machine's)."""
    argv = qemu_argv(SPEC.model_copy(update={"reboot": True}), GRACE, accel, 2222, SOCKETS)
    assert argv[0] == "qemu-system-aarch64" and _pairs(argv, "-machine") == ["virt"]
    assert _pairs(argv, "-accel") == ["tcg,thread=multi"] and _pairs(argv, "-cpu") == ["max,pauth-impdef=on"]
    assert _pairs(argv, "-bios") == ["/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"]
    assert _pairs(argv, "-kernel") == ["/c/vmlinuz"] and _pairs(argv, "-initrd") == ["/c/initrd.img"]
    assert "console=ttyAMA0,115200" in _pairs(argv, "-append")[0] and "ttyS0" not in _pairs(argv, "-append")[0]
    assert "pvpanic-pci,addr=0x1" in _pairs(argv, "-device") and "pvpanic" not in _pairs(argv, "-device")
    assert "name=opt/gigafactory/host_key,file=/s/hk" in _pairs(argv, "-fw_cfg")
    native = qemu_argv(SPEC, FILES, accel, 2222, SOCKETS)
    assert native[0] == "qemu-system-x86_64" and "-bios" not in native and "console=ttyS0,115200" in _pairs(native, "-append")[0]
    with pytest.raises(ValueError, match="aarch64 VMs from their disk only"):
        qemu_argv(DISKLESS, dataclasses.replace(NO_DISK, arch="aarch64"), Accel.TCG, 2222, SOCKETS)


@pytest.mark.parametrize("cached", [None, Accel.KVM, Accel.TCG])
def test_kvm_is_never_probed_for_a_foreign_architecture(cached) -> None:
    def probe() -> bool:
        raise AssertionError("probed KVM for an aarch64 guest")
    assert choose_accel(cached, kvm_available=True, probe_kvm=probe, foreign=True) == (Accel.TCG, False)
