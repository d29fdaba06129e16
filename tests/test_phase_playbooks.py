"""The phase registry (infra/plan/phases.py) and the playbooks agree: every playbook but the shared ones the
others import is a registered phase's, every phase has its playbook, and a phase's plays address exactly the phase's
hosts, as Ansible resolves their ``hosts:`` patterns against the site's inventory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader

from conftest import RIGA, ROOT, site_data
from infra.orchestrate.power import POWER_CAP_PLAYBOOK
from infra.plan.phases import PHASES, REGISTRY, Phase
from infra.plan import build_plan
from infra.render.inventory import inventory_view
from infra.site import validate_data

PLAYBOOKS = ROOT / "playbooks"
IMPORT_KEYS = ("import_playbook", "ansible.builtin.import_playbook")


def entries(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text())


def plays(path: Path) -> list[dict]:
    """The playbook's own plays (what it imports is another playbook's)."""
    return [e for e in entries(path) if not any(k in e for k in IMPORT_KEYS)]


def shared_playbooks() -> set[str]:
    """The playbooks the others import (validated.yml): no phase's own."""
    return {e[k] for path in PLAYBOOKS.glob("*.yml") for e in entries(path) for k in IMPORT_KEYS if k in e}


@pytest.fixture(scope="module")
def site_inventory(tmp_path_factory):
    """riga-1 with a boot server and execution hosts, so that every phase has hosts; its plan and Ansible's view of
    its inventory."""
    data = site_data(RIGA)
    data.setdefault("provisioning", {}).update(images={"server": "ctl01"}, execution={"hosts": ["controller", "ctl02"]})
    site = validate_data(data)
    plan = build_plan(site)
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory_view(site, plan)))
    return plan, InventoryManager(loader=DataLoader(), sources=[str(path)])


def test_every_playbook_is_a_phase_and_every_phase_has_one():
    on_disk = {p.relative_to(ROOT).as_posix() for p in PLAYBOOKS.glob("*.yml")}
    shared = {f"{PLAYBOOKS.relative_to(ROOT).as_posix()}/{name}" for name in shared_playbooks()}
    assert shared == {"playbooks/validated.yml"}
    assert on_disk - shared - {POWER_CAP_PLAYBOOK} == {p.playbook for p in REGISTRY}     # power --cap's: no phase
    assert [p.name for p in PHASES] == ["base", "boot", "rdma", "gpu", "power", "slurm", "kubernetes", "health"]


@pytest.mark.parametrize("phase", REGISTRY, ids=lambda p: p.name)
def test_a_phase_playbooks_plays_address_exactly_the_phase_hosts(phase: Phase, site_inventory):
    plan, inventory = site_inventory
    hosts = set(phase.hosts(plan))
    assert hosts, f"the test site has no hosts for phase {phase.name}: the check would be empty"
    assert {h.name for h in inventory.get_hosts(phase.pattern)} == hosts
    addressed: set[str] = set()
    for play in plays(ROOT / phase.playbook):
        reached = {h.name for h in inventory.get_hosts(play["hosts"])}
        assert reached, f"{phase.playbook}: play {play['name']!r} ({play['hosts']}) reaches no host"
        assert reached <= hosts, (f"{phase.playbook}: play {play['name']!r} ({play['hosts']}) reaches hosts outside the "
                                  f"phase's groups {phase.groups}: {sorted(reached - hosts)[:5]}")
        addressed |= reached
    assert addressed == hosts, f"{phase.playbook}: no play reaches {sorted(hosts - addressed)[:5]}"
