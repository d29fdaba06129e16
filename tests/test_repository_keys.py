"""Every site repository a phase installs from is verified with a key the site file names: validation warns about
each one that names none (the phase then stops before installing), and the roles receive each named key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from infra.plan import build_plan
from infra.render.inventory import group_vars
from infra.site import load_site
from infra.site.checks import run_checks
from conftest import RIGA, keyless_mirrors, site_data

KEYS = Path(__file__).parent / "keys"              # a throw-away key made with gpg: ed25519, a cv25519 subkey
ARMOURED = (KEYS / "test.asc").read_text()
BINARY = (KEYS / "test.gpg").read_bytes()
FINGERPRINT = "04206DE7719AAE0B677A831382ECAA2973440187"


def keyless(site) -> set[str]:
    return {p.path for p in run_checks(site) if p.path.endswith(".signed_by") and p.severity == "warning"}


def load(tmp_path: Path, data: dict):
    path = tmp_path / "site.yml"
    path.write_text(yaml.safe_dump(data))
    return load_site(path)


def test_riga1_validates_with_a_warning_per_repository_it_installs_from_without_a_key(tmp_path):
    site = load(tmp_path, keyless_mirrors(site_data(RIGA)))
    assert keyless(site) == {"repositories.cuda.signed_by", "repositories.doca.signed_by", "repositories.slurm.signed_by"}
    message = next(str(p) for p in run_checks(site) if p.path == "repositories.doca.signed_by")
    assert "the rdma phase stops before it installs DOCA-OFED" in message, message
    assert group_vars(site, build_plan(site))["gf_repository_keys"] == {}     # Debian's mirror: Debian's keyring


def test_a_named_key_file_or_fingerprint_silences_the_warning_and_reaches_the_roles(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cuda.asc").write_text(ARMOURED)
    (tmp_path / "keys" / "doca.gpg").write_bytes(BINARY)
    data = keyless_mirrors(site_data(RIGA))
    data["repositories"]["cuda"] = {"url": data["repositories"]["cuda"], "signed_by": "keys/cuda.asc"}
    data["repositories"]["doca"] = {"url": data["repositories"]["doca"], "signed_by": "keys/doca.gpg", "fingerprint": FINGERPRINT}
    data["repositories"]["slurm"] = {"url": data["repositories"]["slurm"], "fingerprint": FINGERPRINT}
    site = load(tmp_path, data)
    assert keyless(site) == set()
    keys = group_vars(site, build_plan(site))["gf_repository_keys"]
    assert keys == {
        "cuda": {"signed_by": str(tmp_path / "keys" / "cuda.asc"), "armored": True, "fingerprint": None},
        "doca": {"signed_by": str(tmp_path / "keys" / "doca.gpg"), "armored": False, "fingerprint": FINGERPRINT},
        "slurm": {"signed_by": None, "armored": None, "fingerprint": FINGERPRINT},
    }


def test_only_repositories_a_phase_installs_from_are_asked_for_a_key(tmp_path):
    data = keyless_mirrors(site_data(RIGA))
    data["software"]["rdma"] = "inbox"                       # DOCA no longer installed: its mirror may stay keyless
    data["repositories"]["kubernetes"] = "http://mirror.riga-1.internal/kubernetes"   # riga-1 has a cluster
    data["repositories"]["enroot"] = "http://mirror.riga-1.internal/enroot"           # and pyxis
    site = load(tmp_path, data)
    assert keyless(site) == {"repositories.cuda.signed_by", "repositories.slurm.signed_by",
                             "repositories.kubernetes.signed_by", "repositories.enroot.signed_by"}


STOP = """
- name: A phase's repository step on a site whose repository names no key
  hosts: {host}
  connection: local
  gather_facts: false
  tasks:
    - name: Apply the role's repository tasks
      ansible.builtin.include_role:
        name: {role}
        tasks_from: {tasks}
"""


@pytest.mark.parametrize("repo, host, role, tasks, change", [
    ("kubernetes", "k8s-cp01", "kubernetes", "packages.yml", {}),
    ("enroot", "ctl01", "slurm_common", "containers.yml", {"slurm": {"containers": "pyxis"}}),
    ("doca", "gpu0001", "rdma", "stack-doca-ofed.yml", {}),
    ("cuda", "gpu0001", "nvidia_driver", "packages.yml", {}),
])
def test_a_phase_stops_before_it_installs_from_a_repository_without_a_key(tmp_path, repo, host, role, tasks, change):
    """The first thing the role does with the repository is ask for its key; --check, so that nothing here changes."""
    import os
    import subprocess
    import sys

    from conftest import ROOT, bin_path

    data = site_data(RIGA)
    data["repositories"][repo] = f"http://mirror.riga-1.internal/{repo}"
    for section, values in change.items():
        data[section].update(values)
    site = tmp_path / "site.yml"
    site.write_text(yaml.safe_dump(data))
    play = tmp_path / "play.yml"
    play.write_text(STOP.format(host=host, role=role, tasks=tasks))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    result = subprocess.run([bin_path("ansible-playbook"), "--check", "-i", str(site), "-e", f"ansible_python_interpreter={sys.executable}",
                             str(play)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stdout[-3000:]
    assert f"repositories.{repo} names no signing key: set repositories.{repo}.signed_by" in result.stdout, result.stdout[-3000:]
    failed_task = result.stdout.split("fatal:")[0].rsplit("TASK [", 1)[1]
    assert failed_task.startswith(f"site_repository_key : The site names the key that signs repositories.{repo}"), failed_task
    ran = re.findall(r"^TASK \[([^\]]+)\]", result.stdout.split("fatal:")[0], re.MULTILINE)
    assert not [t for t in ran if re.search(r"Write|Install|Point APT|Refresh|Pin |Hold|The APT source|The key file", t)], ran
    assert re.search(rf"{host}\s*:\s*ok=\d+\s+changed=0\s", result.stdout), result.stdout[-1000:]
