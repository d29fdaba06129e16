"""The base role's APT sources, with a real APT in a Debian 13 chroot: the site's Debian mirror and Debian's security
suite, verified with Debian's archive keyring or the key the site names, through the test bed's mirror cache
(apt-cacher-ng on 127.0.0.1:3142, infra/vm/mirror_cache.py, in front of this machine's Debian mirror) as the VM
scenarios and the demo reach it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import RIGA, site_data

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("debootstrap", "unshare", "gpg", "apt-cacher-ng")),
                       reason="needs root, debootstrap, unshare, gpg and apt-cacher-ng"),
]

HOST = "ctl01"
PLAY = """
- name: The base role's APT sources
  hosts: ctl01
  connection: local
  gather_facts: false
  tasks:
    - name: The base role's APT tasks
      ansible.builtin.include_role:
        name: base
        tasks_from: apt
"""



def converge(tmp_path, url: str, **change):
    from chroots import RoleRun
    site = site_data(RIGA)
    site["repositories"]["debian"] = url
    for section, values in change.items():
        site.setdefault(section, {}).update(values)
    run = RoleRun(tmp_path, site, PLAY)
    try:
        run.run(run.converge("converge1") + run.converge("converge2")
                + run.chroot("sources", "cat /etc/apt/sources.list.d/debian.sources")
                + run.chroot("one-line", "ls /etc/apt/sources.list; true")
                + run.chroot("update", "apt-get update; echo rc=$?")
                + run.chroot("uris", "apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | sort -u"))
        log = run.log()
    finally:
        run.clean()
    assert run.changed("converge1", HOST) > 0
    assert run.changed("converge2", HOST) == 0
    return log


def stanzas(sources: str) -> list[dict[str, str]]:
    blocks = [b for b in re.split(r"\n\s*\n", sources) if "Types:" in b]
    return [dict(line.split(": ", 1) for line in b.splitlines() if ": " in line and not line.startswith("#")) for b in blocks]


def test_the_debian_mirror_and_its_security_suite_verified_with_debians_keyring(tmp_path, mirror_cache):
    log = converge(tmp_path, mirror_cache)
    assert stanzas(log["sources"]) == [
        {"Types": "deb", "URIs": mirror_cache, "Suites": "trixie trixie-updates",
         "Components": "main contrib non-free non-free-firmware", "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg"},
        {"Types": "deb", "URIs": mirror_cache + "-security", "Suites": "trixie-security",
         "Components": "main contrib non-free non-free-firmware", "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg"},
    ], log["sources"]
    assert "No such file" in log["one-line"]                                  # the one-line sources.list is gone
    assert log["update"].strip().endswith("rc=0") and "Err:" not in log["update"], log["update"]
    assert f"{mirror_cache}/ trixie" in log["uris"] and f"{mirror_cache}-security/ trixie-security" in log["uris"], log["uris"]


def test_without_security_updates_and_with_a_fingerprint_the_site_names(tmp_path, mirror_cache):
    """os.security_updates: false leaves the suite out; repositories.debian.fingerprint selects Debian's key."""
    from chroots import cached_chroot
    keyring = cached_chroot("node", "trixie", ["python3", "python3-apt"], components=("main", "contrib", "non-free")) \
        / "usr/share/keyrings/debian-archive-trixie-automatic.pgp"
    keys = subprocess.run(["gpg", "--show-keys", "--with-colons", str(keyring)], capture_output=True, text=True, check=True).stdout
    fingerprint = next(line.split(":")[9] for line in keys.splitlines() if line.startswith("fpr:"))
    log = converge(tmp_path, mirror_cache, os={"security_updates": False})
    assert [s["Suites"] for s in stanzas(log["sources"])] == ["trixie trixie-updates"], log["sources"]

    from chroots import RoleRun
    site = site_data(RIGA)
    site["repositories"]["debian"] = {"url": mirror_cache, "fingerprint": fingerprint}
    site["os"] = {**site.get("os", {}), "security_updates": False}
    (tmp_path / "fpr").mkdir()
    run = RoleRun(tmp_path / "fpr", site, PLAY)
    try:
        run.run(run.converge("converge") + run.chroot("sources", "cat /etc/apt/sources.list.d/debian.sources")
                + run.chroot("update", "apt-get update; echo rc=$?"))
        log = run.log()
    finally:
        run.clean()
    assert run.changed("converge", HOST) > 0
    assert [s["Signed-By"] for s in stanzas(log["sources"])] == [fingerprint], log["sources"]
    assert log["update"].strip().endswith("rc=0") and "Err:" not in log["update"], log["update"]
