"""Network boot, proved on VMs (issue 13): a disk-less VM on the demo's private management segment boots through
iPXE from the serving VM, comes up stateless from its node type's bundle, passes `up`'s configure pass and the health
gate, and a reboot brings it back the same way with nothing of the previous boot left.

The site is the demo's with a boot server (``provisioning.images.server: ctl01``) and node02's boot MAC declared
(``pools[].macs``), kept at a fixed path under .cache/netboot so that its images are cache hits on the next run.
ctl01 boots from its node type's disk image (which then holds the boot_server role's install part); ``up --phase base
--phase boot`` on it configures its management address and the boot server (dnsmasq, nginx, the vm-compute bundle
copied from this machine's image cache). Then node02 is added to the run with no disk: SeaBIOS runs QEMU's iPXE ROM
(Debian's ipxe-qemu) on its management NIC only -> DHCP from dnsmasq (its declared MAC) -> menu.ipxe -> its own
script -> the bundle's boot.ipxe -> kernel and live-boot initrd over HTTP -> live-boot fetches the squashfs -> the
test bed's fw_cfg identity -> SSH. node01 is not booted: every `up` is limited to ctl01 and node02.

Serialized with every other VM user through /tmp/gigafactory-vm.lock; its own launcher state (.cache/netboot/vms),
never the demo's; the VMs are stopped at the end. Under TCG about 13 minutes with the images cached: slow. The boot
times and the bundle's size are printed and written to .cache/netboot/figures.json (docs/images.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from vmcli import LOCK, gigafactory

pytestmark = [
    pytest.mark.vm, pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("qemu-system-x86_64") or not shutil.which("flock"),
                       reason="needs root, qemu and flock"),
]

WORK = ROOT / ".cache" / "netboot"
MAC = "52:54:00:6e:0d:02"          # node02's boot interface, as the site declares it
DISKLESS = "node02"
SERVER = "ctl01"


def netboot_site() -> Path:
    """The demo's inventory folder with a boot server and node02's boot MAC, at a fixed path (stable image keys)."""
    folder = WORK / "site"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "inventories" / "demo", folder)
    data = yaml.safe_load((folder / "site.yml").read_text())
    data["site"]["name"] = "netboot"
    data["provisioning"]["images"] = {"server": SERVER}
    data["provisioning"]["strategy"] = "mitogen_linear"
    next(p for p in data["pools"] if p["name"] == "compute")["macs"] = {DISKLESS: MAC}
    (folder / "site.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / "site.yml"


def on(vm, *command: str, check: bool = True, timeout: float = 120) -> str:
    """A command as root on a VM over SSH (its pinned host key)."""
    result = subprocess.run(vm.ssh(shlex.join(["sudo", "-n", *command])), capture_output=True, text=True,
                            timeout=timeout)
    assert not check or result.returncode == 0, \
        f"{vm.name}: {shlex.join(command)}: rc {result.returncode}: {result.stderr.strip()}"
    return result.stdout.strip()


def exists(vm, path: str) -> bool:
    result = subprocess.run(vm.ssh(shlex.join(["sudo", "-n", "test", "-e", path])), capture_output=True, timeout=60)
    assert result.returncode in (0, 1), f"{vm.name}: test -e {path}: rc {result.returncode}"
    return result.returncode == 0


def boot_id_after(vm, old: str, timeout: float) -> str:
    """Poll SSH until the VM answers with a boot id other than ``old``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = subprocess.run(vm.ssh("cat /proc/sys/kernel/random/boot_id"), capture_output=True, text=True,
                                    timeout=20)
        except subprocess.TimeoutExpired:
            continue
        if result.returncode == 0 and result.stdout.strip() not in ("", old):
            return result.stdout.strip()
        time.sleep(2)
    raise AssertionError(f"{vm.name} did not come back within {timeout:.0f} s; see {vm.serial_log}")


def test_a_diskless_vm_boots_its_bundle_through_ipxe_passes_up_and_the_gate_and_reboots_stateless():
    from infra.image.build import site_images
    from infra.vm.demo import connection_inventory
    from infra.plan import build_plan
    from infra.site import load_site
    from infra.vm.launcher import Launcher
    from infra.vm.site import specs_for_site

    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    launcher = Launcher(WORK / "vms")
    try:
        path = netboot_site()
        site = load_site(str(path))
        plan = build_plan(site, str(path))
        images = {b.node_type: b for b in site_images(site, plan, path, ["vm-service", "vm-compute"])}
        bundle = images["vm-compute"].path / "netboot"
        specs = {s.name: s for s in specs_for_site(site, plan, [SERVER, DISKLESS], network_boot=[DISKLESS])}
        assert specs[DISKLESS].boot == "network" and specs[DISKLESS].mac_of(specs[DISKLESS].boot_nic) == MAC
        server_address = plan.hosts[SERVER].address()
        url = f"http://{server_address}/images/vm-compute"
        conn = WORK / "connection.yml"
        runs = WORK / "runs"

        # --- the boot server: ctl01 from its disk image, then its address and the boot_server role ---------------
        launcher.down()
        (server,) = launcher.up([specs[SERVER]], {SERVER: images["vm-service"].vm_image()})
        conn.write_text(yaml.safe_dump(connection_inventory([server], frozenset({SERVER}))))
        result = gigafactory("up", str(path), "-i", str(conn), "--limit", SERVER, "--phase", "base", "--phase", "boot",
                             "--run-dir", str(runs / "server"))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        served = on(server, "stat", "-c", "%s", "/srv/gigafactory/http/images/vm-compute/root.squashfs")
        assert int(served) == (bundle / "root.squashfs").stat().st_size

        # --- node02: no disk, iPXE from its management NIC, the bundle from ctl01 ---------------------------------
        t0 = time.monotonic()
        (node,) = launcher.add([specs[DISKLESS]])
        first_boot = time.monotonic() - t0
        assert not on(node, "lsblk", "--nodeps", "--noheadings", "--output", "NAME", "--exclude", "1,7,11")  # no disk
        cmdline = on(node, "cat", "/proc/cmdline")
        assert "boot=live" in cmdline.split() and f"fetch={url}/root.squashfs" in cmdline.split(), cmdline
        assert on(node, "findmnt", "--noheadings", "--output", "FSTYPE", "/") == "overlay"
        acks = on(server, "journalctl", "--unit", "dnsmasq", "--no-pager", "--output", "cat")
        assert re.search(rf"DHCPACK\(\S+\) \S+ {MAC} {DISKLESS}", acks), acks[-2000:]

        # --- up's configure pass on the booted bundle, with the health gate ----------------------------------------
        conn.write_text(yaml.safe_dump(connection_inventory([server, node], frozenset({SERVER, DISKLESS}))))
        result = gigafactory("up", str(path), "-i", str(conn), "--limit", f"{SERVER},{DISKLESS}",
                             "--run-dir", str(runs / "both"))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        hosts = json.loads((runs / "both" / "hosts.json").read_text())
        assert hosts[DISKLESS]["status"] == "ok" and "health" in hosts[DISKLESS]["phases_done"], hosts[DISKLESS]
        gate = json.loads(on(node, "cat", "/var/lib/gigafactory/health.json"))
        assert gate["passed"], gate

        # --- reboot: back through iPXE and the bundle, nothing of the previous boot left ---------------------------
        marker = "/var/lib/gigafactory/netboot-marker"
        on(node, "touch", marker)
        before = on(node, "cat", "/proc/sys/kernel/random/boot_id")
        fetches = on(server, "grep", "-c", "GET /images/vm-compute/root.squashfs", "/var/log/nginx/access.log")
        t0 = time.monotonic()
        on(node, "systemd-run", "--on-active=1", "systemctl", "reboot")     # returns before the connection drops
        boot_id_after(node, before, timeout=900)
        reboot = time.monotonic() - t0
        assert not exists(node, marker), "the marker survived the reboot"
        assert not exists(node, "/var/lib/gigafactory/health.json"), "the last boot's gate result survived"
        cmdline = on(node, "cat", "/proc/cmdline")
        assert "boot=live" in cmdline.split() and f"fetch={url}/root.squashfs" in cmdline.split(), cmdline
        again = on(server, "grep", "-c", "GET /images/vm-compute/root.squashfs", "/var/log/nginx/access.log")
        assert int(again) == int(fetches) + 1, (fetches, again)      # fetched from the boot server again

        sizes = {p.name: p.stat().st_size for p in sorted(bundle.iterdir())}
        figures = {"ipxe_boot_to_ssh_s": round(first_boot, 1), "reboot_to_ssh_s": round(reboot, 1),
                   "bundle_bytes": sizes, "bundle_total_bytes": sum(sizes.values()),
                   "accel": (launcher.state_dir / "accel").read_text().strip(), "key": images["vm-compute"].key}
        (WORK / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
        print(f"network boot figures: {json.dumps(figures)}")
    finally:
        launcher.down()
        os.close(lock)
