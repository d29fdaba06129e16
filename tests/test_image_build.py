"""``gigafactory image``: bad input leaves the cache empty, the cache key follows what the image depends on, the chroot
runner's /dev is private, and a real build of a small node type (the roles' install part, natively) gives a manifest,
a squashfs, raw and qcow2 disks, and is found in the cache the second time."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import DEMO, ROOT, site_data

from infra.cli import main
from infra.image.build import BUILD_FILES, install_extravars, tree_kernel
from infra.image.cache import image_key, phase_digests, type_images
from infra.image.boot import NETBOOT_FSTAB
from infra.plan import build_plan
from infra.site import load_site
from infra.stack.node_configuration import PhaseInputs

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "nsenter", "debootstrap")),
                                reason="needs root, unshare, nsenter and debootstrap")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("GIGAFACTORY_CACHE", str(path))
    return path


def write_site(tmp_path: Path, data: dict, name: str = "site.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def cache_files(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*")) if cache.exists() else []


# --- bad input: exit 2, a message naming it, nothing in the cache ----------------------------------------------


def test_an_unknown_node_type_is_named_with_the_known_ones_and_leaves_the_cache_empty(cache, capsys):
    assert main(["image", "build", str(DEMO), "--node-type", "vm-gpu"]) == 2
    err = capsys.readouterr().err
    assert "'vm-gpu'" in err and "vm-service, vm-compute" in err
    assert cache_files(cache) == []


def test_a_site_that_fails_validation_exits_2_and_leaves_the_cache_empty(tmp_path, cache, capsys):
    data = site_data(DEMO)
    data["os"]["release"] = "11"
    assert main(["image", "build", str(write_site(tmp_path, data))]) == 2
    assert "os.release" in capsys.readouterr().err
    assert cache_files(cache) == []


def test_a_repository_that_does_not_answer_is_named_and_leaves_the_cache_empty(tmp_path, cache, capsys):
    with socket.socket() as s:                  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = site_data(DEMO)
    data["repositories"] = {"debian": f"http://127.0.0.1:{port}/debian"}
    del data["testbed"]
    assert main(["image", "build", str(write_site(tmp_path, data)), "--node-type", "vm-compute"]) == 2
    err = capsys.readouterr().err
    assert f"repositories.debian: http://127.0.0.1:{port}/debian does not answer" in err
    assert "Traceback" not in err
    assert cache_files(cache) == []


# --- the cache key ----------------------------------------------------------------------------------------------


def key_of(tmp_path: Path, data: dict, node_type: str = "vm-compute", root: Path = ROOT) -> str:
    path = write_site(tmp_path, data, f"site-{len(list(tmp_path.glob('site-*.yml')))}.yml")
    site = load_site(str(path))
    plan = build_plan(site, str(path))
    [image] = type_images(site, plan, [node_type])
    return image_key(site, image, phase_digests(root, path, image.phases))


def test_an_images_phase_digests_are_the_phase_inputs_node_configuration_hashes(tmp_path):
    """The cache hit reads only the image's phases' files (no inventory, no Pulumi); they hash as PhaseInputs does."""
    path = write_site(tmp_path, site_data(DEMO))
    (tmp_path / "group_vars" / "all").mkdir(parents=True)       # read with the site file: in every phase's digest
    (tmp_path / "group_vars" / "all" / "x.yml").write_text("x: 1\n")
    site = load_site(str(path))
    plan = build_plan(site, str(path))
    [image] = type_images(site, plan, ["vm-compute"])
    everything = PhaseInputs.of(site, plan, ROOT, str(path)).files
    assert phase_digests(ROOT, path, image.phases) == {p: everything[p] for p in image.phases}


def test_the_key_changes_with_software_os_and_repositories(tmp_path):
    data = site_data(DEMO)
    base = key_of(tmp_path, data)
    assert key_of(tmp_path, data) == base
    for section, change in (("software", {"nvidia_driver": {"branch": "550", "flavor": "open",
                                                             "source": "distribution"}}),
                            ("os", {"security_updates": False}),
                            ("repositories", {"debian": "http://10.0.2.2:3142/debian2"})):
        changed = site_data(DEMO)
        changed[section].update(change)
        assert key_of(tmp_path, changed) != base, section


def test_the_key_changes_with_the_node_type_and_its_role_files(tmp_path):
    data = site_data(DEMO)
    base = key_of(tmp_path, data)
    bigger = site_data(DEMO)
    bigger["node_types"]["vm-compute"]["memory_gb"] = 2
    assert key_of(tmp_path, bigger) != base
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "playbooks", copy / "playbooks", ignore=shutil.ignore_patterns("molecule"))
    assert key_of(tmp_path, data, root=copy) == base
    install = copy / "playbooks" / "roles" / "base" / "tasks" / "install.yml"
    install.write_text(install.read_text() + "\n# a change\n")
    assert key_of(tmp_path, data, root=copy) != base


def test_the_key_does_not_change_with_a_pools_hosts_or_addresses(tmp_path):
    data = site_data(DEMO)
    base = key_of(tmp_path, data)
    more = site_data(DEMO)
    [compute] = [p for p in more["pools"] if p["name"] == "compute"]
    compute["hosts"] = "node[01-04]"
    more["slurm"]["partitions"][0]["pools"] = ["compute"]
    assert key_of(tmp_path, more) == base
    moved = site_data(DEMO)
    moved["networks"]["management"]["cidr"] = "192.168.200.0/24"
    moved["fabrics"][0]["ip"]["cidr"] = "192.168.201.0/24"
    assert key_of(tmp_path, moved) == base


def test_a_type_whose_hosts_span_pools_gets_the_union_of_their_groups(tmp_path):
    data = site_data(DEMO)
    data["pools"].append({"name": "compute2", "type": "vm-compute", "hosts": "node03", "racks": "lab1"})
    path = write_site(tmp_path, data)
    site = load_site(str(path))
    [image] = type_images(site, build_plan(site, str(path)), ["vm-compute"])
    assert image.pools == ("compute", "compute2")
    assert {"pool_compute", "pool_compute2", "slurm_compute", "rdma"} <= set(image.groups)
    assert image.phases == ("base", "rdma", "slurm", "health")


def test_the_roles_are_told_the_images_kernel_not_this_machines(tmp_path):
    boot = tmp_path / "boot"
    boot.mkdir()
    for release in ("6.1.0-28-amd64", "6.12.48+deb13-amd64"):
        (boot / f"vmlinuz-{release}").write_text("")
        (boot / f"initrd.img-{release}").write_text("")
    assert tree_kernel(tmp_path) == "6.12.48+deb13-amd64"
    told = install_extravars("gpu", tree_kernel(tmp_path))
    assert told == {"gigafactory_part": "install", "gigafactory_kernel": "6.12.48+deb13-amd64", "gf_phase": "gpu"}
    assert os.uname().release not in told.values()


# --- the chroot runner ------------------------------------------------------------------------------------------


@pytest.mark.root
@NEEDS_ROOT
def test_the_chroot_runners_dev_is_private_with_five_nodes(tmp_path):
    """Five device nodes and the standard links into /proc/self/fd (stdin, stdout, stderr, fd), nothing else."""
    from chroots import cached_chroot, overlay_setup
    from infra.image.chroot import DEV_LINKS, DEV_NODES, Chroot
    base = cached_chroot("node", "trixie", ["python3", "python3-apt"], components=("main", "contrib", "non-free"))
    layers = tmp_path / "layers"
    probe = "gigafactory-probe"
    with Chroot(layers / "merged", tmp_path / "ns", setup=overlay_setup(base, layers)) as chroot:
        before = chroot.run(["/bin/ls", "-A", "/dev"]).stdout.decode().split()
        kinds = chroot.run(["/usr/bin/stat", "-c", "%n %F %t:%T", *(f"/dev/{n}" for n in DEV_NODES)]).stdout.decode()
        chroot.shell(f'echo secret > "$R/dev/{probe}"')
        inside = chroot.run(["/bin/cat", f"/dev/{probe}"]).stdout.decode()
        policy = chroot.run(["/bin/cat", "/usr/sbin/policy-rc.d"]).stdout.decode()
    assert sorted(before) == sorted([*DEV_NODES, *DEV_LINKS])
    for name, (major, minor) in DEV_NODES.items():
        assert f"/dev/{name} character special file {major:x}:{minor:x}" in kinds
    assert inside == "secret\n"
    assert "exit 101" in policy
    assert not Path(f"/dev/{probe}").exists()
    assert not (base / "dev" / probe).exists() and not (layers / "upper" / "dev" / probe).exists()
    assert not (layers / "upper" / "usr" / "sbin" / "policy-rc.d").exists()       # put back as it was: absent


# --- a real build -----------------------------------------------------------------------------------------------


def test_a_second_install_pass_that_changes_anything_is_named_task_by_task(tmp_path, monkeypatch):
    """The builder runs every phase's install part again over the finished tree; whatever changes there (a task
    that is not idempotent, which a node booted from the image would repeat) is returned, phase, role and task."""
    from types import SimpleNamespace

    from infra.image import build as image_build
    from infra.runner.ansible import WaveResult
    path = ROOT / "inventories" / "demo" / "site.yml"
    site = load_site(path)
    plan = build_plan(site, path)
    [image] = type_images(site, plan, ["vm-compute"])
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz-6.12.0-1-amd64").write_bytes(b"")
    (root / "boot" / "initrd.img-6.12.0-1-amd64").write_bytes(b"")
    host = "image-k"

    def fake_run_wave(*, ident, sink, hosts, **_):
        changes = ident == "03-slurm-again"        # one task of one role changes on the second pass
        sink({"event": "runner_on_ok", "event_data": {"host": host, "role": "slurm_common",
              "task": "Slurm directories", "res": {"changed": changes}}})
        return WaveResult(hosts=list(hosts), changed={host: int(changes)})
    monkeypatch.setattr(image_build, "run_wave", fake_run_wave)       # as the builder imports it
    chroot = SimpleNamespace(root=root, python=Path("/usr/bin/python3"), tmp=Path("/tmp"))
    run = lambda again: image_build._run_phases(site, plan, path, image, "k", chroot, tmp_path / "work",  # noqa: E731
                                                lambda _: None, again=again)
    (tmp_path / "work").mkdir()
    assert run(False) == []
    assert run(True) == ["slurm: slurm_common: Slurm directories"]


LIMITED_W = 450        # the plan's GPU power limit for small_site's limited type (4 x 200..700 W and 0.2 kW more in a 2 kW domain)


def small_site(tmp_path: Path, limited: bool = False) -> Path:
    """The demo without fabric, Slurm or tenants: one plain node type, so its image holds base and health.
    ``limited``: the type has four GPUs with a power-limit range in a power domain (no driver: the site names none),
    so its image also holds phase power's install part (the gpu_power program and its unit, enabled)."""
    data = site_data(DEMO)
    for section in ("fabrics", "slurm", "tenants"):
        data.pop(section, None)
    data["software"] = {}
    data["node_types"] = {"vm-plain": {k: v for k, v in data["node_types"]["vm-compute"].items() if k != "hca"}}
    data["pools"] = [{"name": "plain", "type": "vm-plain", "hosts": "plain01", "racks": "lab1"}]
    if limited:
        data["site"]["power"]["domains"] = [{"name": "lab-row", "kw": 2.0}]
        data["racks"][0].update(domain="lab-row", power_kw=10)
        data["node_types"]["vm-plain"].update(
            power_kw=3.0, gpu={"model": "H100", "count": 4, "power_limit_w": {"min": 200, "max": 700, "default": 700}})
    return write_site(tmp_path, data)


def the_images_program_sets_the_limit(tree: Path, scratch: Path) -> list[list[str]]:
    """gigafactory-gpu-power as the image holds it, run in a chroot of the image's tree (a throw-away overlay) with
    a planned limit of LIMITED_W and the stand-in nvidia-smi (tests/nvidia_smi_power_standin.py); the stand-in's
    calls (each argv)."""
    from chroots import overlay_setup
    from infra.image.chroot import Chroot
    layers = scratch / "layers"
    with Chroot(layers / "merged", scratch / "ns", setup=overlay_setup(tree, layers)) as chroot:
        standin = ROOT / "tests" / "nvidia_smi_power_standin.py"
        chroot.shell(f'install -m 0755 {standin} "$R/usr/local/bin/nvidia-smi"; mkdir -p "$R/run/smi" "$R/etc/gigafactory"; '
                     f"echo '{{\"limit_w\": {LIMITED_W}}}' > \"$R/etc/gigafactory/gpu-power.json\"")
        done = chroot.run(["/usr/bin/env", "NVIDIA_SMI_STANDIN=/run/smi", "PATH=/usr/local/bin:/usr/bin:/bin",
                           "/usr/local/sbin/gigafactory-gpu-power"], check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"4 GPUs at {LIMITED_W} W" in done.stdout.decode()
        calls = chroot.shell('cat "$R/run/smi/calls"').stdout.decode()
    return [json.loads(line) for line in calls.splitlines()]


@pytest.mark.root
@pytest.mark.slow
@NEEDS_ROOT
@pytest.mark.skipif(not all(shutil.which(t) for t in ("mksquashfs", "unsquashfs", "qemu-img", "mke2fs", "apt-cacher-ng")),
                    reason="needs squashfs-tools, qemu-utils, e2fsprogs and apt-cacher-ng")
def test_a_real_build_has_a_manifest_a_squashfs_and_disks_and_is_a_cache_hit_the_second_time(tmp_path, cache, capsys):
    site = small_site(tmp_path, limited=True)
    assert build_plan(load_site(str(site)), str(site)).power.limits_w == {"vm-plain": LIMITED_W}
    assert main(["image", "build", str(site), "--boot-url", "http://192.168.100.1/images/plain"]) == 0
    out = capsys.readouterr().out
    assert "phases base, gpu, power, health" in out
    [folder] = [p for p in (cache / "node-images").iterdir() if not p.name.startswith(".")]
    assert f"image {folder} (key {folder.name})" in out
    assert [p.name for p in (cache / "node-images").iterdir() if p.name.startswith(".build")] == []

    manifest = json.loads((folder / "manifest.json").read_text())
    packages = {p["name"]: p for p in manifest["packages"]}
    assert packages["python3"]["version"] and packages["chrony"]["version"]
    assert {s["repository"] for s in packages["chrony"]["sources"]} & {"debian", "debian_security"}
    assert packages["chrony"]["sources"][0]["uri"].startswith("http://10.0.2.2:3142/debian")
    assert "live-boot" not in packages

    listing = subprocess.run(["unsquashfs", "-l", str(folder / "netboot" / "root.squashfs")],
                             capture_output=True, text=True, check=True).stdout.split()
    assert "squashfs-root/usr/bin/python3" in listing
    assert "squashfs-root/usr/sbin/policy-rc.d" not in listing
    # phase power's install part: the program and its unit, enabled; the planned watts are the configure part's
    for name in ("usr/local/sbin/gigafactory-gpu-power", "etc/systemd/system/gigafactory-gpu-power.service",
                 "etc/systemd/system/multi-user.target.wants/gigafactory-gpu-power.service"):
        assert f"squashfs-root/{name}" in listing, name
    assert "squashfs-root/etc/gigafactory/gpu-power.json" not in listing
    tree = tmp_path / "tree"
    subprocess.run(["unsquashfs", "-q", "-d", str(tree), str(folder / "netboot" / "root.squashfs")], check=True,
                   capture_output=True)
    query = ["--query-gpu=index,power.limit", "--format=csv,noheader,nounits"]
    assert the_images_program_sets_the_limit(tree, tmp_path / "power") == \
        [query, *(["-i", str(i), "-pl", str(LIMITED_W)] for i in range(4)), query]
    shutil.rmtree(tree)
    for name in BUILD_FILES:                    # the build tree's own settings (unsafe-io, no docs, no initrd triggers)
        assert f"squashfs-root/{name}" not in listing
    assert f"squashfs-root/{BUILD_FILES[0]}".rsplit("/", 1)[0] in listing
    conf = subprocess.run(["unsquashfs", "-cat", str(folder / "netboot" / "root.squashfs"),
                           "etc/initramfs-tools/update-initramfs.conf"], capture_output=True, text=True, check=True).stdout
    assert "update_initramfs=yes" in conf
    fstab = subprocess.run(["unsquashfs", "-cat", str(folder / "netboot" / "root.squashfs"), "etc/fstab"],
                           capture_output=True, text=True, check=True).stdout
    assert fstab == NETBOOT_FSTAB           # never the disk's root (/dev/vda on a test bed): live-boot adds the overlay
    assert [p.name for p in (cache / "chroots").iterdir() if p.name.startswith("image-base-")], "the base is cached"
    for name, kind in (("disk.raw", "raw"), ("disk.qcow2", "qcow2")):
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(folder / name)],
                                         capture_output=True, text=True, check=True).stdout)
        assert info["format"] == kind
    for name in ("vmlinuz", "initrd.img", "netboot/vmlinuz", "netboot/initrd.img"):
        assert (folder / name).stat().st_size > 1 << 20, name
    ipxe = (folder / "netboot" / "boot.ipxe").read_text()
    assert "set gf-image-url http://192.168.100.1/images/plain" in ipxe and "boot=live fetch=" in ipxe

    built = (folder / "image.json").stat().st_mtime_ns
    assert main(["image", "build", str(site)]) == 0
    again = capsys.readouterr().out
    assert f"cache hit: {folder} (key {folder.name})" in again and "building" not in again
    assert (folder / "image.json").stat().st_mtime_ns == built

    assert main(["image", "list"]) == 0
    assert folder.name in capsys.readouterr().out
    assert main(["image", "show", folder.name[:8]]) == 0
    shown = capsys.readouterr().out
    assert "node type vm-plain of site demo" in shown and "packages" in shown


def test_the_key_changes_with_what_the_install_parts_read_beyond_the_site_sections(tmp_path):
    """The image's host receives the site's time zone (base writes /etc/localtime) and a cluster's Kubernetes version
    (kubernetes holds kubeadm at it): both are in the key through the inventory variables."""
    data = site_data(DEMO)
    base = key_of(tmp_path, data)
    zone = site_data(DEMO)
    zone["site"]["timezone"] = "Europe/Vilnius"
    assert key_of(tmp_path, zone) != base
    bed = site_data(DEMO)
    del bed["testbed"]
    assert key_of(tmp_path, bed) != base             # a test bed's image carries the VMs' first boot; a site's does not


def test_a_real_sites_image_gets_none_of_the_test_beds_first_boot_files():
    """The VM test bed's guest files (passwordless sudo, fw_cfg keys, virtio fstab) are installed only for a test bed."""
    source = (ROOT / "infra" / "image" / "build.py").read_text()
    body = source.split("def _build(", 1)[1].split("\ndef ", 1)[0]
    for call in ("install_guest_files(rootfs)", 'chroot.run(["/bin/sh", "-c", CONFIGURE_SCRIPT])'):
        before = body.split(call, 1)[0].rstrip().splitlines()[-1]
        assert before.strip() == "if site.testbed is not None:" or "if site.testbed is not None:" in before, call


# --- arm64 (Grace): the architecture from the node type's cpu.arch ---------------------------------------------


def grace_data() -> dict:
    """small_site's one plain node type, as an aarch64 machine (QEMU's virt board; Grace on a real site)."""
    data = site_data(DEMO)
    for section in ("fabrics", "slurm", "tenants"):
        data.pop(section, None)
    data["software"] = {}
    node_type = {k: v for k, v in data["node_types"]["vm-compute"].items() if k != "hca"}
    node_type.update(model="virt", cpu={**node_type["cpu"], "arch": "aarch64"})
    data["node_types"] = {"vm-grace": node_type}
    data["pools"] = [{"name": "grace", "type": "vm-grace", "hosts": "grace01", "racks": "lab1"}]
    return data


def grace_site(tmp_path: Path) -> Path:
    return write_site(tmp_path, grace_data(), "grace.yml")


def test_an_aarch64_type_is_debootstrapped_for_arm64_with_its_kernel(tmp_path, cache, monkeypatch):
    """The builder asks for the base tree of the node type's architecture; debootstrap's argv carries --arch and the
    arm64 kernel, and the native tree's argv has no --arch (debootstrap's default: this machine's)."""
    from infra.image import base, build as image_build
    asked: list[dict] = []

    class Stop(Exception):
        pass

    def fake_cached_debootstrap(prefix, suite, packages, **kwargs):
        asked.append({"packages": tuple(packages), **kwargs})
        raise Stop
    monkeypatch.setattr(image_build, "cached_debootstrap", fake_cached_debootstrap)
    for path, node_type in ((grace_site(tmp_path), "vm-grace"), (small_site(tmp_path), "vm-plain")):
        site = load_site(str(path))
        plan = build_plan(site, str(path))
        [image] = type_images(site, plan, [node_type])
        (tmp_path / node_type).mkdir()
        with pytest.raises(Stop):
            image_build._build(site, plan, path, image, "k", {}, tmp_path / node_type, lambda _: None)
    grace, plain = asked
    assert grace["arch"] == "arm64" and "linux-image-arm64" in grace["packages"] and "linux-image-amd64" not in grace["packages"]
    assert plain["arch"] is None and "linux-image-amd64" in plain["packages"]

    argv: list[list[str]] = []
    monkeypatch.setattr(base, "_run", lambda a, **_: argv.append(a))
    base.debootstrap(tmp_path / "t", "trixie", list(grace["packages"]), variant="minbase", mirror="http://m/debian", arch="arm64")
    base.debootstrap(tmp_path / "t", "trixie", list(plain["packages"]), variant="minbase", mirror="http://m/debian")
    assert "--arch=arm64" in argv[0] and "linux-image-arm64" in next(a for a in argv[0] if a.startswith("--include="))
    assert not any(a.startswith("--arch") for a in argv[1])


def test_keys_differ_by_architecture_and_the_native_base_tree_keeps_its_name(tmp_path):
    """The base tree and the image of an aarch64 type have their own keys; the x86_64 base tree's name is the one
    it had before architectures were named (the hash of the same ident), so its cached debootstrap is reused."""
    from infra.image.arch import ARCHITECTURES
    from infra.image.base import tree_name
    from infra.image.cache import image_packages
    mirror = "http://127.0.0.1:3142/debian"
    native = tree_name("image-base", "trixie", image_packages(ARCHITECTURES["x86_64"]), mirror=mirror)
    assert native == "image-base-trixie-88900529b35a"        # its name before issue 24
    assert tree_name("image-base", "trixie", image_packages(ARCHITECTURES["aarch64"]), mirror=mirror, arch="arm64") != native
    grace = grace_data()
    x86 = grace_data()
    x86["node_types"]["vm-grace"]["cpu"]["arch"] = "x86_64"
    assert key_of(tmp_path, grace, "vm-grace") != key_of(tmp_path, x86, "vm-grace")


@pytest.mark.parametrize("state, named", [
    ("unmounted", "binfmt_misc is not mounted"),
    ("no entry", "no binfmt_misc entry"),
    ("disabled", "is disabled"),
    ("no F flag", "lacks the F (fix binary) flag"),
    ("no interpreter", "which is not installed"),
])
def test_an_aarch64_build_is_refused_naming_what_the_host_lacks(tmp_path, cache, monkeypatch, capsys, state, named):
    """Without qemu-user-static registered with binfmt_misc (F flag), `image build` of an aarch64 type exits 2 naming
    the missing piece and the commands that set it up, before anything is fetched or written."""
    from infra.image import arch, build as image_build
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    interpreter = tmp_path / "qemu-aarch64-static"
    interpreter.write_text("")
    if state != "unmounted":
        (binfmt / "status").write_text("enabled\n")
    if state not in ("unmounted", "no entry"):
        (binfmt / "qemu-aarch64").write_text(
            f"{'disabled' if state == 'disabled' else 'enabled'}\n"
            f"interpreter {interpreter if state != 'no interpreter' else tmp_path / 'absent'}\n"
            f"flags: {'P' if state == 'no F flag' else 'PF'}\noffset 0\n")
    monkeypatch.setattr(arch, "BINFMT_DIR", binfmt)
    monkeypatch.setattr(arch, "host_cpu", lambda: "x86_64")

    def no_build(*_, **__):
        raise AssertionError("the build went on without what the host lacks")
    monkeypatch.setattr(image_build, "cached_debootstrap", no_build)
    assert main(["image", "build", str(grace_site(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "node type vm-grace (cpu.arch aarch64): this machine cannot build its image" in err and named in err
    assert "Traceback" not in err
    assert cache_files(cache) == []
    assert arch.foreign_arch_problem(arch.ARCHITECTURES["aarch64"], host="aarch64") is None     # native: nothing needed


def test_a_registered_interpreter_with_the_f_flag_is_enough(tmp_path):
    from infra.image.arch import ARCHITECTURES, foreign_arch_problem
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "qemu-aarch64").write_text(f"enabled\ninterpreter {tmp_path / 'status'}\nflags: PF\noffset 0\n")
    assert foreign_arch_problem(ARCHITECTURES["aarch64"], tmp_path, host="x86_64") is None


ARM64_WORK = ROOT / ".cache" / "arm64"          # a fixed path: tests/test_arm64_vm.py boots the image this builds


def grace_site_kept() -> Path:
    """grace_data at a fixed path under .cache (the image's key does not depend on it; its reuse does not either)."""
    ARM64_WORK.mkdir(parents=True, exist_ok=True)
    return write_site(ARM64_WORK, grace_data(), "site.yml")


@pytest.mark.root
@pytest.mark.slow
@NEEDS_ROOT
@pytest.mark.skipif(not all(shutil.which(t) for t in ("mksquashfs", "qemu-img", "mke2fs", "apt-cacher-ng")),
                    reason="needs squashfs-tools, qemu-utils, e2fsprogs and apt-cacher-ng")
def test_a_real_arm64_build_has_arm64_packages_and_kernel_and_passed_the_second_pass(capsys):
    """The smallest image (base and health) of an aarch64 type, built natively through qemu-user-static into this
    machine's cache (kept: the boot test uses it). Every package is arm64 (or all), the kernel is arm64's, the
    image records its architecture, and the build's own second pass found nothing to change (else it fails)."""
    from infra.image.arch import ARCHITECTURES, foreign_arch_problem
    problem = foreign_arch_problem(ARCHITECTURES["aarch64"])
    if problem:
        pytest.skip(problem)
    from infra.image.cache import images_root
    path = grace_site_kept()
    assert main(["image", "build", str(path)]) == 0
    out = capsys.readouterr().out
    folder = images_root() / key_of(ARM64_WORK, grace_data(), "vm-grace")
    assert f"image {folder} (key {folder.name})" in out or f"cache hit: {folder}" in out, out[-2000:]
    meta = json.loads((folder / "image.json").read_text())
    assert meta["architecture"] == "arm64" and meta["kernel"].endswith("-arm64"), meta
    manifest = json.loads((folder / "manifest.json").read_text())
    arches = {p["architecture"] for p in manifest["packages"]}
    assert arches <= {"arm64", "all"} and "arm64" in arches, arches
    assert {p["name"] for p in manifest["packages"]} >= {"linux-image-arm64", "python3", "chrony"}
    kernel = (folder / "vmlinuz").read_bytes()[:64]
    assert kernel[:2] == b"MZ" or kernel[:2] == b"\x1f\x8b", kernel[:8]        # arm64's EFI Image (or gzip)
    assert "ttyAMA0" in (folder / "netboot" / "boot.ipxe").read_text()
