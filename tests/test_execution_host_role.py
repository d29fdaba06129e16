"""The execution_host role in a Debian 13 chroot: a virtualenv with ansible-core and ansible-runner at this
controller's versions, from the package index this machine's pip is configured with (given as the site's
repositories.python, as a site names its mirror; the chroot trusts this machine's certificate authorities), and
the project unpacked at the controller's revision; a second converge changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version

import pytest

from conftest import DEMO, site_data

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("debootstrap", "unshare")),
                       reason="needs root, debootstrap and unshare"),
]

HOST = "ctl01"
VENV = "/opt/gigafactory/venv"
PLAY = """
- name: An execution host
  hosts: ctl01
  connection: local
  gather_facts: false
  vars:
    gf_project_archive: {{path: "{path}", revision: "{revision}"}}
  tasks:
    - name: The execution_host role
      ansible.builtin.include_role:
        name: execution_host
"""


def configured_index() -> str:
    """The package index this machine's pip uses: PIP_INDEX_URL, else pip's configured index-url, else pip's own
    default (read from pip, so that no registry is named here)."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    got = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True)
    if got.returncode == 0 and got.stdout.strip():
        return got.stdout.strip()
    from pip._internal.models.index import PyPI
    return PyPI.simple_url


def test_an_execution_host_gets_the_controllers_ansible_and_project(tmp_path):
    from chroots import RoleRun

    from infra.project import REPO_ROOT, project_archive
    archive = project_archive(REPO_ROOT, tmp_path / "project")
    site = site_data(DEMO)
    site.setdefault("provisioning", {})["execution"] = {"hosts": ["controller", HOST]}
    site.setdefault("repositories", {})["python"] = configured_index()
    run = RoleRun(tmp_path, site, PLAY.format(path=archive.path, revision=archive.revision))
    # The node trusts the certificate authorities this machine trusts (as a site's nodes trust its own CA), and
    # sees none of this machine's pip settings: what it installs from comes from the site file alone.
    run.env = {k: v for k, v in run.env.items() if not k.startswith("PIP_")}
    trust = ('mkdir -p "$R/usr/local/share/ca-certificates" && '
             'cp /etc/ssl/certs/ca-certificates.crt "$R/usr/local/share/ca-certificates/this-machine.crt"\n')
    try:
        run.run(trust + run.converge("converge1") + run.converge("converge2")
                + run.chroot("runner", f"{VENV}/bin/ansible-runner --version")
                + run.chroot("core", f"{VENV}/bin/python -c 'import ansible; print(ansible.__version__)'")
                + run.chroot("project", "readlink /opt/gigafactory/project/current; "
                             f"PYTHONPATH=/opt/gigafactory/project/current {VENV}/bin/python -c "
                             "'import infra.plan, ansible_runner, pydantic; print(pydantic.VERSION)'"))
        log = run.log()
    finally:
        run.clean()
    assert run.changed("converge1", HOST) > 0
    assert run.changed("converge2", HOST) == 0, log["converge2.log"][-3000:]
    assert log["runner"].strip() == version("ansible-runner")
    assert log["core"].strip() == version("ansible-core")
    assert log["project"].split() == [f"/opt/gigafactory/project/{archive.revision}", version("pydantic")], log["project"]
    assert "PIP_INDEX_URL" not in log["converge1.log"]         # the index went through the environment, unlogged
