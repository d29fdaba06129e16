"""slurm.containers: pyxis without the site's enroot repository stops the Slurm phase first, naming what is missing."""

from __future__ import annotations

from conftest import RIGA, keyless_mirrors, playbook, site_data

PLAY = """
- name: The Slurm roles' container step on a site without an enroot repository
  hosts: ctl01
  connection: local
  gather_facts: false
  tasks:
    - name: Apply slurm_common's container tasks
      ansible.builtin.include_role:
        name: slurm_common
        tasks_from: containers.yml
"""


def test_validate_warns_of_pyxis_without_an_enroot_repository():
    from infra.site import site_warnings, validate_data
    site = keyless_mirrors(site_data(RIGA))
    assert "repositories.enroot" in [w.path for w in site_warnings(validate_data(site))]
    site["repositories"]["enroot"] = "http://mirror.riga-1.internal/enroot"
    assert "repositories.enroot" not in [w.path for w in site_warnings(validate_data(site))]


def test_pyxis_without_an_enroot_repository_stops_and_names_the_field_and_packages(tmp_path):
    site = site_data(RIGA)
    site["slurm"]["containers"] = "pyxis"
    site["repositories"].pop("enroot", None)
    result = playbook(tmp_path, site, PLAY)
    assert result.returncode == 2, result.stdout[-3000:]
    assert "slurm.containers is 'pyxis' but the site names no repositories.enroot" in result.stdout
    assert "enroot, nvslurm-plugin-pyxis" in result.stdout
    failed_task = result.stdout.split("fatal:")[0].rsplit("TASK [", 1)[1]
    assert failed_task.startswith("slurm_common : pyxis needs the site's enroot repository")      # nothing ran before it
    assert "changed=0" in result.stdout
