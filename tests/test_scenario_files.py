"""Static checks of the Molecule scenarios' playbooks: mistakes that would otherwise surface only after a long VM run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parent.parent / "playbooks" / "roles"
PLAYBOOKS = sorted(ROLES.glob("*/molecule/*/*.yml"))
COMMANDS = ("ansible.builtin.command", "ansible.builtin.shell", "command", "shell")


def tasks(node):
    """Every task of a playbook, blocks and rescues included."""
    if isinstance(node, list):
        for item in node:
            yield from tasks(item)
    elif isinstance(node, dict):
        if any(k in node for k in COMMANDS) or "loop" in node:
            yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            if key in node:
                yield from tasks(node[key])


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: str(p.relative_to(ROLES)))
def test_command_loops_are_lists_of_strings(path):
    """A loop item like ``apt-cache policy x | sed 's/Candidate: //'`` is a mapping to YAML unless quoted
    (': ' inside a plain scalar); the nvidia_driver verify lost a 65-minute run to exactly that."""
    for task in tasks(yaml.safe_load(path.read_text())):
        module = next((k for k in COMMANDS if k in task), None)
        if module is None or "loop" not in task or not isinstance(task["loop"], list):
            continue
        bad = [item for item in task["loop"] if not isinstance(item, str)]
        assert not bad, f"{path}: task {task.get('name')!r} loops over non-strings (quote them): {bad}"


def test_the_check_finds_the_mistake(tmp_path):
    play = yaml.safe_load("- hosts: all\n  tasks:\n    - name: x\n      ansible.builtin.shell: '{{ item }}'\n"
                          "      loop:\n        - apt-cache policy p | sed -n 's/^ *Candidate: //p'\n")
    [task] = list(tasks(play))
    assert not isinstance(task["loop"][0], str)
