"""Conventions of the playbooks that lint does not check: failures are never swallowed (no ignore_errors, no
failed_when: false: a block/rescue or a precise condition says what is meant), and each file a role writes on a node
has one owner (the CUDA repository's APT source: nvidia_driver; the cuda role includes its task file)."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import ROOT

PLAYBOOKS = ROOT / "playbooks"
CUDA_SOURCE = "/etc/apt/sources.list.d/gigafactory-cuda.sources"


def tasks_in(node, path: Path):
    """Every task (and play) mapping in a YAML document, blocks and rescues included."""
    if isinstance(node, list):
        for item in node:
            yield from tasks_in(item, path)
    elif isinstance(node, dict):
        yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            yield from tasks_in(node.get(key), path)


def all_tasks():
    for path in sorted(PLAYBOOKS.rglob("*.yml")):
        if path.name == "site.yml" or "group_vars" in path.parts:
            continue
        for task in tasks_in(yaml.safe_load(path.read_text()), path):
            yield path.relative_to(ROOT), task


def test_no_task_swallows_its_failure():
    found = [(str(path), task.get("name")) for path, task in all_tasks()
             if "ignore_errors" in task or task.get("failed_when") is False]
    assert found == []


def test_the_cuda_repository_source_has_one_owner():
    writers = [(str(path), task.get("name")) for path, task in all_tasks()
               if any(isinstance(args, dict) and args.get("dest") == CUDA_SOURCE for args in task.values())]
    assert writers == [("playbooks/roles/nvidia_driver/tasks/repository.yml", "Write the CUDA repository source")]
    cuda = yaml.safe_load((PLAYBOOKS / "roles/cuda/tasks/install.yml").read_text())
    assert {"name": "nvidia_driver", "tasks_from": "repository"} in [t.get("ansible.builtin.include_role") for t in cuda]
