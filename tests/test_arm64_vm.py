"""An arm64 node image (an aarch64 node type, Grace's architecture) boots under qemu-system-aarch64 and takes `up`.

The image is the one tests/test_image_build.py's real arm64 build keeps in this machine's cache (built here when
absent, natively through qemu-user-static). Its VM runs on QEMU's virt board under UEFI (edk2 loads the image's
kernel), console on ttyAMA0, under TCG: an x86_64 machine's KVM cannot run it and is never probed. Then `up`'s
configure part (the host booted from its image) runs against it once, as on the demo's x86_64 VMs. Slow: about
an hour of emulated build when the image is not cached, and minutes of emulated boot (docs/images.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time

import pytest
import yaml

from test_image_build import ARM64_WORK, grace_site_kept
from vmcli import LOCK, gigafactory

pytestmark = [
    pytest.mark.vm, pytest.mark.root, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("qemu-system-aarch64", "flock"))
                       or not os.path.exists("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"),
                       reason="needs root, qemu-system-arm, qemu-efi-aarch64 and flock"),
]

HOST = "grace01"


def test_an_arm64_image_boots_to_ssh_under_qemu_system_aarch64_and_takes_ups_configure_part():
    from infra.image.arch import ARCHITECTURES, foreign_arch_problem
    from infra.image.build import site_images
    from infra.plan import build_plan
    from infra.site import load_site
    from infra.vm.demo import connection_inventory
    from infra.vm.launcher import Launcher
    from infra.vm.mirrors import image_build_mirrors
    from infra.vm.site import specs_for_site

    problem = foreign_arch_problem(ARCHITECTURES["aarch64"])
    if problem:
        pytest.skip(problem)
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    launcher = Launcher(ARM64_WORK / "vms")
    try:
        path = grace_site_kept()
        site = load_site(str(path))
        plan = build_plan(site, str(path))
        [image] = site_images(site, plan, path, [site.pools[0].type], **image_build_mirrors(site))
        assert image.arch == "aarch64"
        launcher.down()
        t0 = time.monotonic()
        (vm,) = launcher.up(specs_for_site(site, plan, [HOST]), {HOST: image.vm_image()})
        boot = time.monotonic() - t0
        argv = json.loads((launcher.state_dir / "vms" / HOST / "qemu.argv").read_text())
        assert argv[0] == "qemu-system-aarch64" and "tcg,thread=multi" in argv, argv
        assert (launcher.state_dir / "accel").exists() is False          # a foreign guest's TCG is not this machine's verdict
        assert on(vm, "uname", "-m") == "aarch64"
        assert "console=ttyAMA0" in on(vm, "cat", "/proc/cmdline")

        conn = ARM64_WORK / "connection.yml"
        conn.write_text(yaml.safe_dump(connection_inventory([vm], frozenset({HOST}))))
        t0 = time.monotonic()
        result = gigafactory("up", str(path), "-i", str(conn), "--limit", HOST, "--run-dir", str(ARM64_WORK / "run"))
        configure = time.monotonic() - t0
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        hosts = json.loads((ARM64_WORK / "run" / "hosts.json").read_text())
        assert hosts[HOST]["status"] == "ok" and {"base", "health"} <= set(hosts[HOST]["phases_done"]), hosts[HOST]
        print(f"arm64 VM: boot to SSH {boot:.0f} s, up's configure part {configure:.0f} s (TCG)")
        (ARM64_WORK / "figures.json").write_text(json.dumps({"boot_s": round(boot), "up_s": round(configure),
                                                             "key": image.key}) + "\n")
    finally:
        launcher.down()
        os.close(lock)


def on(vm, *command: str) -> str:

    result = subprocess.run(vm.ssh(*command), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr.strip()}"
    return result.stdout.strip()
