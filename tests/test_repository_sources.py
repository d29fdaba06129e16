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


def roles_on(tmp_path, repo, repository: str, play: str, **software):
    """riga-1 with ``repositories.<repository>`` pointing at ``repo``; the chroot trusts the mirror's key."""
    from chroots import RoleRun
    site = site_data(RIGA)
    site["repositories"][repository] = repo.url
    site["software"].update(software)
    run = RoleRun(tmp_path, site, play)
    keyring = tmp_path / "mirror.gpg"
    keyring.write_bytes(repo.keyring())
    return run, f'install -D -m 0644 {keyring} "$R/usr/share/keyrings/gigafactory-{repository}.gpg"\n'


def test_the_branch_is_pinned_and_held_and_toolkits_sit_side_by_side(tmp_path, mirror):
    kernel = os.uname().release          # what `uname -r` says in the chroot: the role installs its headers
    for name, version, files in [("nvidia-open", "570.100-1", None), ("nvidia-open", "575.51-1", None),
                                 ("nvidia-fabricmanager-570", "570.100-1", None), ("nvidia-fabricmanager-575", "575.51-1", None),
                                 (f"linux-headers-{kernel}", "1.0", None),
                                 ("cuda-toolkit-12-4", "12.4.1-1", nvcc("12.4")), ("cuda-toolkit-12-8", "12.8.1-1", nvcc("12.8"))]:
        mirror.add(name, version, files)
    mirror.publish()
    # riga-1: branch 570, open modules, H200 HGX (NVSwitch): Fabric Manager
    run, trust = roles_on(tmp_path, mirror, "cuda", PLAY, cuda={"versions": ["12.4", "12.8"], "default": "12.4"})
    try:
        run.run(trust + run.converge("converge1") + run.converge("converge2")
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
    run, trust = roles_on(tmp_path, mirror, "doca", PLAY_DOCA)          # riga-1's software.rdma: doca-ofed
    try:
        run.run(trust + run.converge("converge1") + run.converge("converge2")
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
