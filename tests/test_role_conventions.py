"""Conventions of the playbooks that lint does not check: failures are never swallowed (no ignore_errors, no
failed_when: false: a block/rescue or a precise condition says what is meant), each file a role writes on a node
has one owner (the CUDA repository's APT source: nvidia_driver; the cuda role includes its task file), and every role
is documented: a README with the same four sections, naming every option of its argument_specs and the Molecule
scenario or test files that exercise it, and a row in the top README's role table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

PLAYBOOKS = ROOT / "playbooks"
CUDA_SOURCE = "/etc/apt/sources.list.d/gigafactory-cuda.sources"
ROLES = PLAYBOOKS / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir())
README_SECTIONS = ("What it does", "Variables", "Install and configure parts", "Tests")
# A Molecule scenario (`molecule/<s>` of the role itself, `<role>/molecule/<s>`, `playbooks/roles/<role>/molecule/<s>`)
# or a test file.
SCENARIO = re.compile(r"(?<![\w/])(?:(?:playbooks/roles/)?(\w+)/)?molecule/([\w-]+)")
TEST_FILE = re.compile(r"(?<![\w/])tests/test_\w+\.py")


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


def readme_sections(role: str) -> dict[str, str]:
    """A role's README.md as {second-level heading: its text}; {} when there is none."""
    path = ROLES / role / "README.md"
    if not path.exists():
        return {}
    parts = re.split(r"^## +(.+?) *$", path.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def scenarios_named(role: str, text: str) -> list[str]:
    """The Molecule scenarios a text names that exist (a folder with molecule.yml), as paths under playbooks/roles."""
    found = []
    for owner, scenario in SCENARIO.findall(text):
        folder = ROLES / (owner or role) / "molecule" / scenario
        if (folder / "molecule.yml").exists():
            found.append(str(folder.relative_to(ROLES)))
    return found


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_each_role_has_a_readme_with_the_four_sections(role):
    assert (ROLES / role / "README.md").exists(), f"playbooks/roles/{role} has no README.md"
    assert tuple(readme_sections(role)) == README_SECTIONS


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_each_roles_readme_names_every_option_of_its_argument_specs(role):
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert "main" in specs
    variables = readme_sections(role).get("Variables", "")
    missing = [f"{entry}: {option}" for entry, spec in specs.items() for option in spec.get("options", {})
               if f"`{option}`" not in variables]
    assert missing == [], f"playbooks/roles/{role}/README.md, section Variables, does not name {missing}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_each_roles_readme_names_a_test_that_exists(role):
    tests = readme_sections(role).get("Tests", "")
    named_files = TEST_FILE.findall(tests)
    assert [f for f in named_files if not (ROOT / f).exists()] == [], "named test files that do not exist"
    assert scenarios_named(role, tests) + named_files, \
        f"playbooks/roles/{role}/README.md names no Molecule scenario or tests/test_*.py file under Tests"


def test_the_top_readmes_role_table_names_every_role():
    text = (ROOT / "README.md").read_text()
    table = text.split("| role | what it does |", 1)[1].split("\n\n", 1)[0]
    listed = {name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    assert set(ROLE_NAMES) - listed == set()
