"""Shared fixtures: the repository's sites as data, ready to be altered per test."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RIGA = ROOT / "inventories" / "riga-1" / "site.yml"
DEMO = ROOT / "inventories" / "demo" / "site.yml"
_CACHE: dict[Path, dict] = {}


def site_data(path: Path) -> dict:
    if path not in _CACHE:
        _CACHE[path] = yaml.safe_load(path.read_text())
    return copy.deepcopy(_CACHE[path])


def keyless_mirrors(data: dict) -> dict:
    """riga-1's site data with its mirrors as the shared riga-1 declares them: plain URLs for Debian, CUDA, DOCA and
    Slurm, no signing keys, no enroot, Kubernetes or chart mirror (six warnings)."""
    data["repositories"] = {name: repo["url"] if isinstance(repo, dict) else repo for name, repo in data["repositories"].items()
                            if name in ("debian", "cuda", "doca", "slurm")}
    return data


def _boots_vms(path: str) -> bool:
    """A test file whose tests boot VMs: its name ends in ``_vm.py`` (``pytest_collection_modifyitems`` holds every
    test marked ``vm`` to it)."""
    return path.endswith("_vm.py")


def pytest_collection_modifyitems(config, items):
    """The files of VM tests first; a test marked ``vm`` in a file not named ``*_vm.py`` is an error (the xdist
    scheduler below knows them by name: it sees test ids, not markers)."""
    misplaced = [item.nodeid for item in items if item.get_closest_marker("vm") and not _boots_vms(item.nodeid.split("::")[0])]
    if misplaced:
        raise pytest.UsageError(f"tests marked vm live in files named *_vm.py: {', '.join(misplaced[:5])}")
    items.sort(key=lambda item: not _boots_vms(item.nodeid.split("::")[0]))        # stable: VM files first


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist (``scripts/test`` runs two workers): every VM test file one work unit, first, so one worker
    runs them one after another (they share the VM lock, and an emulated guest keeps a core busy) while the other
    takes the rest a file at a time (a module's fixtures built once). Scopes by file name, because pytest 9.2 keeps
    xdist 3.8's ``xdist_group`` suffix out of the test ids (Node.nodeid no longer reads ``_nodeid``)."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False      # the collection's order (VM files first), not the largest file first

    class VmFilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "vm" if _boots_vms(path) else path

    return VmFilesTogether(config, log)


@pytest.fixture(autouse=True)
def _release_slurm_overlays():
    """A test's real-Slurm chroot overlays (tests/realslurm.py) go with the test."""
    yield
    realslurm = sys.modules.get("realslurm")
    if realslurm is not None:
        realslurm.release_overlays()


@pytest.fixture
def riga() -> dict:
    """riga-1's site file as a fresh dict (mutate freely)."""
    return site_data(RIGA)


@pytest.fixture
def demo() -> dict:
    return site_data(DEMO)


def bin_path(name: str) -> str:
    """A console script next to the running interpreter (the project's venv), else on PATH."""
    import sys
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, **kwargs)


def playbook(tmp_path: Path, site: dict, play: str) -> subprocess.CompletedProcess:
    """Run ``play`` with ``site`` (site-file data) as inventory, on this machine's Python (plays use connection local)."""
    site_file = tmp_path / "site.yml"
    site_file.write_text(yaml.safe_dump(site))
    path = tmp_path / "play.yml"
    path.write_text(play)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(ROOT / "playbooks" / "roles"))
    return subprocess.run([bin_path("ansible-playbook"), "-i", str(site_file), "-e", f"ansible_python_interpreter={sys.executable}",
                           str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def mirror_cache():
    """Chroot tests' Debian mirror: the mirror cache's URL on this machine; stopped afterwards if this test started it."""
    from infra.vm import mirror_cache as cache
    from infra.image.base import cache_root
    running = cache._answering()
    cache.ensure_mirror_cache()
    yield cache.HOST_URL
    if not running:
        cache._stop(cache_root() / "apt-cacher-ng" / "acng.pid")
