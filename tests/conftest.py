"""Shared fixtures: the repository's sites as data, ready to be altered per test."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
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
