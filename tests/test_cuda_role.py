"""The cuda role's profile script, rendered by the role from a site file and read by a real shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, bin_path, site_data, RIGA

PLAY = """
- name: Render the cuda role's profile script only
  hosts: gpu0001
  connection: local
  gather_facts: false
  roles:
    - role: cuda
      vars:
        cuda_install: false
        cuda_profile_dir: {out}
"""


def render_profile(tmp_path: Path, cuda, *extra: str) -> str:
    """Apply the cuda role (profile only) to riga-1's gpu0001 on this machine, with software.cuda replaced."""
    site = site_data(RIGA)
    site["software"]["cuda"] = cuda
    site_file = tmp_path / "site.yml"
    site_file.write_text(yaml.safe_dump(site))
    out = tmp_path / "profile.d"
    out.mkdir()
    play = tmp_path / "play.yml"
    play.write_text(PLAY.format(out=out))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"))
    result = subprocess.run([bin_path("ansible-playbook"), "-i", str(site_file), "-e", f"ansible_python_interpreter={sys.executable}", *extra, str(play)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return (out / "gigafactory-cuda.sh").read_text()


def shell_view(script: str, tmp_path: Path, preset: str = "") -> list[str]:
    path = tmp_path / "cuda.sh"
    path.write_text(script)
    out = subprocess.run(["bash", "--noprofile", "--norc", "-c",
                          f"{preset} PATH=/usr/bin:/bin; . {path}; . {path}; echo \"$CUDA_HOME\"; echo \"$PATH\"; echo \"${{LD_LIBRARY_PATH:-}}\""],
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_default_version_on_path_once_others_listed(tmp_path):
    script = render_profile(tmp_path, {"versions": ["12.4", "12.8"], "default": "12.4"})
    assert "#   12.8: /usr/local/cuda-12.8" in script
    home, path, ld = shell_view(script, tmp_path)
    assert home == "/usr/local/cuda-12.4"
    assert path == "/usr/local/cuda-12.4/bin:/usr/bin:/bin"          # read twice, added once
    assert ld == "/usr/local/cuda-12.4/lib64"


def test_default_is_the_last_listed_version_when_unset(tmp_path):
    home, path, _ = shell_view(render_profile(tmp_path, ["12.4", "12.8"]), tmp_path)
    assert (home, path.split(":")[0]) == ("/usr/local/cuda-12.8", "/usr/local/cuda-12.8/bin")


def test_a_user_picks_another_version_by_cuda_home(tmp_path):
    script = render_profile(tmp_path, {"versions": ["12.4", "12.8"], "default": "12.4"})
    home, path, _ = shell_view(script, tmp_path, preset="CUDA_HOME=/usr/local/cuda-12.8;")
    assert home == "/usr/local/cuda-12.8" and path.startswith("/usr/local/cuda-12.8/bin:")


def test_distribution_toolkit_home(tmp_path):
    script = render_profile(tmp_path, {"versions": ["12.4"], "source": "distribution"})
    home, path, ld = shell_view(script, tmp_path)
    assert home == "/usr/lib/nvidia-cuda-toolkit"
    assert path == "/usr/lib/nvidia-cuda-toolkit/bin:/usr/bin:/bin"
    assert ld == ""


def test_a_default_outside_the_versions_fails_the_role(tmp_path):
    with pytest.raises(AssertionError, match="default 11.8"):
        render_profile(tmp_path, ["12.4"], "-e", "cuda_default=11.8")


def test_a_hostile_version_stays_data_in_every_login_shell(tmp_path):
    """Bypassing the site model (extra vars): shell text in a version reaches CUDA_HOME as a string, and runs nothing."""
    import json
    hostile = f"12.4$(touch {tmp_path}/pwned)`touch {tmp_path}/pwned2`'\"x"
    script = render_profile(tmp_path, ["12.4"], "-e", json.dumps({"cuda_versions": [hostile], "cuda_default": hostile}))
    home, path, _ = shell_view(script, tmp_path)
    assert home == f"/usr/local/cuda-{hostile}"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_a_newline_in_a_version_is_refused(tmp_path):
    import json
    with pytest.raises(AssertionError, match="CUDA version '12.4\\\\\\\\nexport X=1' holds the control character U\\+000A"):
        render_profile(tmp_path, ["12.4"], "-e", json.dumps({"cuda_versions": ["12.4\nexport X=1"], "cuda_default": "12.4\nexport X=1"}))
