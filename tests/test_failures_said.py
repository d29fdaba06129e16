"""Every failure of the inventory plugin ends ansible-inventory with the plugin's message and a non-zero exit (Ansible
would otherwise fall back to its yaml plugin and exit 0 with a partial inventory); ``render`` never shows a traceback.

A bug is injected through a ``sitecustomize`` module on PYTHONPATH that replaces ``infra.plan.build_plan``.
"""

from __future__ import annotations

import os
import subprocess

import yaml
from conftest import DEMO, ROOT, bin_path, run

INJECTED = "import infra.plan\n\ndef broken(*args, **kwargs):\n    raise KeyError('injected')\n\n" \
           "infra.plan.build_plan = broken\n"


def run_with_a_bug(tmp_path, argv: list[str]) -> subprocess.CompletedProcess:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(INJECTED)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PYTHONPATH=os.pathsep.join([str(shim), str(ROOT)]))
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)


def test_ansible_inventory_fails_with_the_plugins_message_on_an_invalid_site(tmp_path, riga):
    riga["slurm"]["controllers"] = ["ctl09"]
    (tmp_path / "site.yml").write_text(yaml.safe_dump(riga))
    result = run([bin_path("ansible-inventory"), "-i", str(tmp_path / "site.yml"), "--list"])
    assert result.returncode == 2, result.stderr
    assert "slurm.controllers: controller 'ctl09' is not a host of any pool" in result.stderr
    assert "Unable to parse" not in result.stderr and "ctl01" not in result.stdout


def test_ansible_inventory_fails_on_a_site_file_that_cannot_be_read(tmp_path):
    (tmp_path / "site.yml").symlink_to(tmp_path / "gone" / "site.yml")      # as root, a mode 000 file is readable
    result = run([bin_path("ansible-inventory"), "-i", str(tmp_path / "site.yml"), "--list"])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "gigafactory_site:" in result.stderr and "cannot read the site file" in result.stderr
    assert "Unable to parse" not in result.stderr and "Traceback" not in result.stderr


def test_ansible_inventory_fails_on_a_bug_in_the_plugin_instead_of_falling_back(tmp_path):
    result = run_with_a_bug(tmp_path, [bin_path("ansible-inventory"), "-i", str(DEMO), "--list"])
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "gigafactory_site:" in result.stderr and "KeyError: 'injected'" in result.stderr
    assert "Unable to parse" not in result.stderr and "Traceback" not in result.stderr
    assert "ctl01" not in result.stdout


def test_render_into_a_place_that_cannot_be_written_is_exit_2_naming_it(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = run([bin_path("gigafactory"), "render", str(DEMO), "--out", str(tmp_path / "a-file" / "out")])
    assert result.returncode == 2, result.stderr
    assert f"--out '{tmp_path / 'a-file' / 'out'}'" in result.stderr and "Not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_render_says_a_bug_in_a_sentence(tmp_path):
    result = run_with_a_bug(tmp_path, [bin_path("gigafactory"), "render", str(DEMO), "--out", str(tmp_path / "out")])
    assert result.returncode == 1, result.stderr
    assert "KeyError: 'injected'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
