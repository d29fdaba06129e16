"""The roles' repository sources, with a real APT, for riga-1's gpu0001 in a Debian 13 chroot: the nvidia_driver
role's APT side and the cuda role from "the site's CUDA mirror", the rdma role's DOCA-OFED from "the site's DOCA mirror".

Each mirror is a signed flat repository on loopback (tests/aptrepo.py) holding packages with the vendor's names and
versions but no content (no registry these machines reach carries NVIDIA's): two driver branches, Fabric Manager,
two CUDA toolkits whose nvcc only prints its version, the doca-ofed metapackage. What is real is everything the roles ask of APT: the signed
source, the branch pin, the holds, which versions get installed, what an upgrade would do after the mirror syncs a
new branch, and the login shell's CUDA. The DKMS build and modinfo check are the Molecule scenario's (distribution); DOCA's own
kernel modules are not in the stand-in (Soft-RoCE on the rdma scenario's VMs carries RDMA).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, RIGA, bin_path, site_data

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("debootstrap", "unshare", "gpg", "dpkg-scanpackages")),
                       reason="needs root, debootstrap, unshare, gpg and dpkg-scanpackages"),
]

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

CONVERGE = """\
"$ANSIBLE_PLAYBOOK" -i {site} -e ansible_python_interpreter={python} -e ansible_remote_tmp={tmp} {play} > {logs}/{name}.log 2>&1
echo $? > {logs}/{name}.rc
"""

INSTALLED = "chroot \"$R\" dpkg-query -W -f '${{Package}} ${{Version}}\\n' 'nvidia-*' 'cuda-toolkit-*' > {logs}/{name} 2>&1\n"


def nvcc(version: str) -> dict[str, str]:
    return {f"/usr/local/cuda-{version}/bin/nvcc": f"#!/bin/sh\necho 'Cuda compilation tools, release {version} (test package)'\n"}


def test_the_branch_is_pinned_and_held_and_toolkits_sit_side_by_side(tmp_path):
    from aptrepo import Repository
    from chroots import cached_chroot, chroot_python, overlay_script
    base = cached_chroot("cuda", "trixie", ["python3", "python3-apt"], components=("main", "contrib", "non-free"))
    kernel = os.uname().release          # what `uname -r` says in the chroot: the role installs its headers

    repo = Repository(tmp_path / "mirror" / "cuda", tmp_path / "gnupg")
    for name, version, files in [("nvidia-open", "570.100-1", None), ("nvidia-open", "575.51-1", None),
                                 ("nvidia-fabricmanager-570", "570.100-1", None), ("nvidia-fabricmanager-575", "575.51-1", None),
                                 (f"linux-headers-{kernel}", "1.0", None),
                                 ("cuda-toolkit-12-4", "12.4.1-1", nvcc("12.4")), ("cuda-toolkit-12-8", "12.8.1-1", nvcc("12.8"))]:
        repo.add(name, version, files)
    repo.publish()
    keyring = tmp_path / "mirror.gpg"
    keyring.write_bytes(repo.keyring())

    site = site_data(RIGA)               # branch 570, open modules, H200 HGX (NVSwitch): Fabric Manager
    site["repositories"]["cuda"] = repo.url
    site["software"]["cuda"] = {"versions": ["12.4", "12.8"], "default": "12.4"}
    site_file = tmp_path / "site.yml"
    site_file.write_text(yaml.safe_dump(site))
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    logs = tmp_path / "logs"
    logs.mkdir()
    remote_tmp = tmp_path / "ansible-tmp"
    remote_tmp.mkdir()
    layers = tmp_path / "layers"
    python = chroot_python(tmp_path / "python3-in-chroot", layers)
    common = dict(site=site_file, python=python, tmp=remote_tmp, play=play, logs=logs)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"),
               ANSIBLE_PLAYBOOK=bin_path("ansible-playbook"))

    def in_chroot(body: str) -> None:
        # one mount namespace per call; the overlay's upper layer carries the chroot's state to the next call
        result = subprocess.run(["unshare", "--mount", "--fork", "bash", "-c", overlay_script(base, layers, remote_tmp, body)],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr

    try:
        in_chroot(f'install -D -m 0644 {keyring} "$R/usr/share/keyrings/gigafactory-cuda.gpg"\n'
                  + CONVERGE.format(name="converge1", **common) + CONVERGE.format(name="converge2", **common)
                  + INSTALLED.format(name="installed1", logs=logs)
                  + f'chroot "$R" apt-mark showhold > {logs}/holds 2>&1\n'
                  + f"chroot \"$R\" bash -lc 'nvcc; echo \"$CUDA_HOME\"' > {logs}/default 2>&1\n"
                  + f"chroot \"$R\" env CUDA_HOME=/usr/local/cuda-12.8 bash -lc 'nvcc' > {logs}/other 2>&1\n")

        # the mirror syncs upstream: a new point release on the branch and a new branch
        repo.add("nvidia-open", "570.120-1")
        repo.add("nvidia-open", "575.60-1")
        repo.publish()
        in_chroot(f'chroot "$R" apt-get update > {logs}/update 2>&1\n'          # the node sees the sync
                  + CONVERGE.format(name="converge3", **common)                  # the role again
                  + INSTALLED.format(name="installed2", logs=logs)
                  + f'chroot "$R" apt-cache policy nvidia-open > {logs}/policy 2>&1\n'
                  + f'chroot "$R" apt-get -s dist-upgrade > {logs}/upgrade-held 2>&1\n'
                  + f'chroot "$R" apt-mark unhold nvidia-open >/dev/null && chroot "$R" apt-get -s dist-upgrade > {logs}/upgrade-unheld 2>&1\n')
        log = {p.name: p.read_text() for p in logs.iterdir()}
    finally:
        repo.close()
        shutil.rmtree(layers, ignore_errors=True)

    for run, changed in (("converge1", "[1-9]\\d*"), ("converge2", "0"), ("converge3", "0")):
        assert log[f"{run}.rc"].strip() == "0", log[f"{run}.log"][-4000:]
        assert re.search(rf"gpu0001\s*:\s*ok=\d+\s+changed={changed}\s", log[f"{run}.log"]), log[f"{run}.log"][-2000:]

    want = {"nvidia-open 570.100-1", "nvidia-fabricmanager-570 570.100-1", "cuda-toolkit-12-4 12.4.1-1", "cuda-toolkit-12-8 12.8.1-1"}
    assert set(log["installed1"].split("\n")) - {""} == want, log["installed1"]       # 570, not the newer 575
    assert {"nvidia-open", "nvidia-fabricmanager-570"} <= set(log["holds"].split()), log["holds"]
    assert log["default"].splitlines() == ["Cuda compilation tools, release 12.4 (test package)", "/usr/local/cuda-12.4"], log["default"]
    assert log["other"].strip() == "Cuda compilation tools, release 12.8 (test package)", log["other"]

    assert set(log["installed2"].split("\n")) - {""} == want, log["installed2"]      # a rerun upgrades nothing
    assert re.search(r"Candidate: 570\.120-1", log["policy"]), log["policy"]        # the pin keeps the branch
    assert "Inst nvidia-open" not in log["upgrade-held"], log["upgrade-held"]        # the hold keeps the version
    assert re.search(r"Inst nvidia-open \[570\.100-1\] \(570\.120-1 ", log["upgrade-unheld"]), log["upgrade-unheld"]



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


def test_doca_ofed_comes_from_the_sites_doca_mirror_and_the_rest_from_debian(tmp_path):
    from aptrepo import Repository
    from chroots import cached_chroot, chroot_python, overlay_script
    base = cached_chroot("cuda", "trixie", ["python3", "python3-apt"], components=("main", "contrib", "non-free"))
    repo = Repository(tmp_path / "mirror" / "doca", tmp_path / "gnupg")
    repo.add("doca-ofed", "2.9.1-1", depends="rdma-core")
    repo.publish()
    keyring = tmp_path / "mirror.gpg"
    keyring.write_bytes(repo.keyring())
    site = site_data(RIGA)               # software.rdma: doca-ofed
    site["repositories"]["doca"] = repo.url
    site_file = tmp_path / "site.yml"
    site_file.write_text(yaml.safe_dump(site))
    play = tmp_path / "play.yml"
    play.write_text(PLAY_DOCA)
    logs = tmp_path / "logs"
    logs.mkdir()
    remote_tmp = tmp_path / "ansible-tmp"
    remote_tmp.mkdir()
    layers = tmp_path / "layers"
    python = chroot_python(tmp_path / "python3-in-chroot", layers)
    common = dict(site=site_file, python=python, tmp=remote_tmp, play=play, logs=logs)
    body = (f'install -D -m 0644 {keyring} "$R/usr/share/keyrings/gigafactory-doca.gpg"\n'
            + CONVERGE.format(name="converge1", **common) + CONVERGE.format(name="converge2", **common)
            + "chroot \"$R\" dpkg-query -W -f '${Package} ${Version}\\n' doca-ofed rdma-core infiniband-diags perftest"
            + f" > {logs}/installed 2>&1\n"
            + f'chroot "$R" sh -c "command -v ibstat; command -v ib_write_bw" > {logs}/tools 2>&1\n')
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"),
               ANSIBLE_PLAYBOOK=bin_path("ansible-playbook"))
    try:
        result = subprocess.run(["unshare", "--mount", "--fork", "bash", "-c", overlay_script(base, layers, remote_tmp, body)],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        log = {p.name: p.read_text() for p in logs.iterdir()}
    finally:
        repo.close()
        shutil.rmtree(layers, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    for run, changed in (("converge1", "[1-9]\\d*"), ("converge2", "0")):
        assert log[f"{run}.rc"].strip() == "0", log[f"{run}.log"][-4000:]
        assert re.search(rf"gpu0001\s*:\s*ok=\d+\s+changed={changed}\s", log[f"{run}.log"]), log[f"{run}.log"][-2000:]
    installed = dict(line.split(" ", 1) for line in log["installed"].splitlines())
    assert installed["doca-ofed"] == "2.9.1-1", log["installed"]                     # from the DOCA mirror
    assert {"rdma-core", "infiniband-diags", "perftest"} <= installed.keys(), log["installed"]   # Debian's, real
    assert log["tools"].split() == ["/usr/sbin/ibstat", "/usr/bin/ib_write_bw"], log["tools"]
