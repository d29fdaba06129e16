"""The roles' repository sources, with a real APT, for riga-1's gpu0001 in a Debian 13 chroot: the nvidia_driver
role's APT side and the cuda role from "the site's CUDA mirror", the rdma role's DOCA-OFED from "the site's DOCA mirror".

Each mirror is a signed flat repository on loopback (tests/aptrepo.py) holding packages with the vendor's names and
versions but no content (no registry these machines reach carries NVIDIA's): two driver branches, Fabric Manager,
two CUDA toolkits whose nvcc only prints its version, the doca-ofed metapackage. What is real is everything the roles
ask of APT: the signed source, the branch pin, the holds, which versions get installed, what an upgrade would do after
the mirror syncs a new branch, and the login shell's CUDA. The DKMS build and modinfo check are the Molecule
scenario's (distribution); DOCA's own kernel modules are not in the stand-in (Soft-RoCE on the rdma scenario's VMs
carries RDMA).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import RIGA, site_data

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("debootstrap", "unshare", "gpg", "dpkg-scanpackages")),
                       reason="needs root, debootstrap, unshare, gpg and dpkg-scanpackages"),
]

HOST = "gpu0001"

PLAY = """
- name: The driver's packages and CUDA from the site's mirror
  hosts: gpu0001
  connection: local
  gather_facts: false
  tasks:
    - name: The nvidia_driver role's APT side
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: packages
    - name: The cuda role
      ansible.builtin.include_role:
        name: cuda
"""

PLAY_DOCA = """
- name: The RDMA stack from the site's DOCA mirror
  hosts: gpu0001
  connection: local
  gather_facts: false
  tasks:
    - name: The rdma role's DOCA-OFED stack
      ansible.builtin.include_role:
        name: rdma
        tasks_from: stack-doca-ofed
"""

INSTALLED = "dpkg-query -W -f '${Package} ${Version}\\n' 'nvidia-*' 'cuda-toolkit-*'"


def nvcc(version: str) -> dict[str, str]:
    return {f"/usr/local/cuda-{version}/bin/nvcc": f"#!/bin/sh\necho 'Cuda compilation tools, release {version} (test package)'\n"}


@pytest.fixture
def mirror(tmp_path):
    from aptrepo import Repository
    repo = Repository(tmp_path / "mirror", tmp_path / "gnupg")
    yield repo
    repo.close()


def roles_on(tmp_path, repo, repository: str, play: str, key: str = "armored", **software):
    """riga-1 with ``repositories.<repository>`` pointing at ``repo``, verified with the key the site file names beside
    it: ``armored`` (keys/<repository>.asc), ``binary`` (keys/<repository>.gpg), or ``other``: a key that did not sign
    the mirror. The chroot trusts nothing of the mirror's own."""
    from chroots import RoleRun
    site = site_data(RIGA)
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    name, data = {"armored": (f"{repository}.asc", repo.armored), "binary": (f"{repository}.gpg", repo.keyring),
                  "other": (f"{repository}.asc", lambda: other_key(tmp_path))}[key]
    (keys / name).write_bytes(data())
    site["repositories"][repository] = {"url": repo.url, "signed_by": f"keys/{name}"}
    site["software"].update(software)
    return RoleRun(tmp_path, site, play)


def other_key(tmp_path) -> bytes:
    """An ASCII-armoured public key of a key pair that signs nothing here."""
    home = tmp_path / "gnupg-other"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    env = dict(os.environ, GNUPGHOME=str(home))
    subprocess.run([*gpg, "--quick-generate-key", "someone else <other@test.invalid>", "ed25519", "sign", "never"],
                   env=env, check=True, capture_output=True)
    return subprocess.run([*gpg, "--export", "--armor"], env=env, check=True, capture_output=True).stdout


# What APT is told: no source says trusted (first line: the files that do), and the site's sources themselves.
SOURCES = "grep -ril trusted /etc/apt/sources.list.d /etc/apt/sources.list; echo ---; cat /etc/apt/sources.list.d/gigafactory-*.sources; true"


def test_the_branch_is_pinned_and_held_and_toolkits_sit_side_by_side(tmp_path, mirror):
    kernel = os.uname().release          # what `uname -r` says in the chroot: the role installs its headers
    for name, version, files in [("nvidia-open", "570.100-1", None), ("nvidia-open", "575.51-1", None),
                                 ("nvidia-fabricmanager-570", "570.100-1", None), ("nvidia-fabricmanager-575", "575.51-1", None),
                                 (f"linux-headers-{kernel}", "1.0", None),
                                 ("cuda-toolkit-12-4", "12.4.1-1", nvcc("12.4")), ("cuda-toolkit-12-8", "12.8.1-1", nvcc("12.8"))]:
        mirror.add(name, version, files)
    mirror.publish()
    # riga-1: branch 570, open modules, H200 HGX (NVSwitch): Fabric Manager
    run = roles_on(tmp_path, mirror, "cuda", PLAY, cuda={"versions": ["12.4", "12.8"], "default": "12.4"})
    try:
        run.run(run.converge("converge1") + run.converge("converge2")
                + run.chroot("sources", SOURCES)
                + run.chroot("installed1", INSTALLED)
                + run.chroot("holds", "apt-mark showhold")
                + run.chroot("default", 'bash -lc \'nvcc; echo "$CUDA_HOME"\'')
                + run.chroot("other", "CUDA_HOME=/usr/local/cuda-12.8 bash -lc nvcc"))
        # the mirror syncs upstream: a new point release on the branch and a new branch
        mirror.add("nvidia-open", "570.120-1")
        mirror.add("nvidia-open", "575.60-1")
        mirror.publish()
        run.run(run.chroot("update", "apt-get update")               # the node sees the sync
                + run.converge("converge3")                           # the role again
                + run.chroot("installed2", INSTALLED)
                + run.chroot("policy", "apt-cache policy nvidia-open")
                + run.chroot("upgrade-held", "apt-get -s dist-upgrade")
                + run.chroot("upgrade-unheld", "apt-mark unhold nvidia-open >/dev/null && apt-get -s dist-upgrade"))
        log = run.log()
    finally:
        run.clean()

    assert run.changed("converge1", HOST) > 0
    assert run.changed("converge2", HOST) == 0
    assert run.changed("converge3", HOST) == 0
    untrusted, sources = log["sources"].split("---\n")
    assert untrusted == "", log["sources"]                                     # no source says trusted
    assert "Signed-By: /etc/apt/keyrings/gigafactory-cuda.asc" in sources, sources   # the key the site file names
    want = {"nvidia-open 570.100-1", "nvidia-fabricmanager-570 570.100-1", "cuda-toolkit-12-4 12.4.1-1", "cuda-toolkit-12-8 12.8.1-1"}
    assert set(log["installed1"].splitlines()) == want, log["installed1"]       # 570, not the newer 575
    assert {"nvidia-open", "nvidia-fabricmanager-570"} <= set(log["holds"].split()), log["holds"]
    assert log["default"].splitlines() == ["Cuda compilation tools, release 12.4 (test package)", "/usr/local/cuda-12.4"], log["default"]
    assert log["other"].strip() == "Cuda compilation tools, release 12.8 (test package)", log["other"]

    assert set(log["installed2"].splitlines()) == want, log["installed2"]      # a rerun upgrades nothing
    assert re.search(r"Candidate: 570\.120-1", log["policy"]), log["policy"]  # the pin keeps the branch
    assert "Inst nvidia-open" not in log["upgrade-held"], log["upgrade-held"]  # the hold keeps the version
    assert re.search(r"Inst nvidia-open \[570\.100-1\] \(570\.120-1 ", log["upgrade-unheld"]), log["upgrade-unheld"]


def test_doca_ofed_comes_from_the_sites_doca_mirror_and_the_rest_from_debian(tmp_path, mirror):
    mirror.add("doca-ofed", "2.9.1-1", depends="rdma-core")
    mirror.publish()
    run = roles_on(tmp_path, mirror, "doca", PLAY_DOCA, key="binary")   # riga-1's software.rdma: doca-ofed
    try:
        run.run(run.converge("converge1") + run.converge("converge2")
                + run.chroot("sources", SOURCES)
                + run.chroot("installed", "dpkg-query -W -f '${Package} ${Version}\\n' doca-ofed rdma-core infiniband-diags perftest")
                + run.chroot("tools", "command -v ibstat; command -v ib_write_bw"))
        log = run.log()
    finally:
        run.clean()
    assert run.changed("converge1", HOST) > 0
    assert run.changed("converge2", HOST) == 0
    installed = dict(line.split(" ", 1) for line in log["installed"].splitlines())
    assert installed["doca-ofed"] == "2.9.1-1", log["installed"]                     # from the DOCA mirror
    assert {"rdma-core", "infiniband-diags", "perftest"} <= installed.keys(), log["installed"]   # Debian's, real
    assert log["tools"].split() == ["/usr/sbin/ibstat", "/usr/bin/ib_write_bw"], log["tools"]
    untrusted, sources = log["sources"].split("---\n")
    assert untrusted == "" and "Signed-By: /etc/apt/keyrings/gigafactory-doca.gpg" in sources, log["sources"]


def test_a_mirror_signed_by_another_key_than_the_site_names_is_refused(tmp_path, mirror):
    mirror.add("doca-ofed", "2.9.1-1", depends="rdma-core")
    mirror.publish()
    run = roles_on(tmp_path, mirror, "doca", PLAY_DOCA, key="other")     # the site names a key that did not sign it
    try:
        run.run(run.converge("converge") + run.chroot("update", "apt-get update; echo rc=$?")
                + run.chroot("installed", "dpkg-query -W doca-ofed; echo rc=$?") + run.chroot("sources", SOURCES))
        log = run.log()
    finally:
        run.clean()
    assert (run.logs / "converge.rc").read_text().strip() != "0", log["converge.log"][-3000:]
    assert "Refresh the package lists" in log["converge.log"].split("fatal:")[-2].rsplit("TASK [", 1)[-1], log["converge.log"][-3000:]
    update = log["update"]
    assert re.search(r"rc=100$", update.strip()), update                          # apt-get update fails
    assert re.search(r"(Missing key|NO_PUBKEY|signatures couldn't be verified)", update), update
    assert f"The repository '{mirror.url} ./ InRelease' is not signed" in update, update
    assert "rc=1" in log["installed"] and "no packages found matching doca-ofed" in log["installed"], log["installed"]
    untrusted, sources = log["sources"].split("---\n")
    assert untrusted == "" and "Signed-By: /etc/apt/keyrings/gigafactory-doca.asc" in sources, log["sources"]


PLAY_ENROOT = """
- name: enroot and pyxis from the site's enroot mirror
  hosts: ctl01
  connection: local
  gather_facts: false
  tasks:
    - name: The slurm_common role's container step
      ansible.builtin.include_role:
        name: slurm_common
        tasks_from: containers.yml
"""


@pytest.mark.parametrize("named", ["signed_by", "fingerprint", "both"])
def test_enroot_comes_from_the_sites_mirror_verified_with_the_key_or_fingerprint_the_site_names(tmp_path, mirror, named):
    """The deb822 source (ansible.builtin.deb822_repository) of a mirror with a suite, as slurm_common writes it.

    ``fingerprint`` alone selects a key from the keyrings APT already trusts: here the mirror's key is put in
    /etc/apt/trusted.gpg.d first, as a Debian mirror's key is by the debian-archive-keyring package."""
    from chroots import RoleRun
    for name in ("enroot", "nvslurm-plugin-pyxis"):
        mirror.add(name, "3.5.0-1")
    mirror.publish(suite="trixie")
    site = site_data(RIGA)
    site["slurm"]["containers"] = "pyxis"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "enroot.asc").write_bytes(mirror.armored())
    site["repositories"]["enroot"] = {"url": mirror.url, **({"signed_by": "keys/enroot.asc"} if named != "fingerprint" else {}),
                                      **({"fingerprint": mirror.fingerprint()} if named != "signed_by" else {})}
    run = RoleRun(tmp_path, site, PLAY_ENROOT)
    trusted = tmp_path / "trusted.asc"
    trusted.write_bytes(mirror.armored() if named == "fingerprint" else b"")
    try:
        run.run(("" if named != "fingerprint" else f'install -m 0644 {trusted} "$R/etc/apt/trusted.gpg.d/site-mirror.asc"\n')
                + 'mkdir -p "$R/etc/slurm"\n' + run.converge("converge1") + run.converge("converge2")
                + run.chroot("installed", "dpkg-query -W -f '${Package} ${Version}\\n' enroot nvslurm-plugin-pyxis")
                + run.chroot("sources", SOURCES))
        log = run.log()
    finally:
        run.clean()
    assert run.changed("converge1", "ctl01") > 0
    assert run.changed("converge2", "ctl01") == 0
    assert log["installed"].splitlines() == ["enroot 3.5.0-1", "nvslurm-plugin-pyxis 3.5.0-1"], log["installed"]
    untrusted, sources = log["sources"].split("---\n")
    signed_by = {"signed_by": "/etc/apt/keyrings/gigafactory-enroot.asc", "fingerprint": mirror.fingerprint(),
                 "both": f"/etc/apt/keyrings/gigafactory-enroot.asc {mirror.fingerprint()}"}[named]
    assert untrusted == "" and f"Signed-By: {signed_by}\n" in sources, log["sources"]
