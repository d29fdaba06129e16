"""Golden renders of riga-1 and demo: a reviewer sees every change in generated configuration.

Regenerate after an intended change with:  GIGAFACTORY_UPDATE_GOLDEN=1 pytest tests/test_render_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.plan import build_plan
from infra.render.files import render_all
from infra.site import load_site
from conftest import DEMO, RIGA

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("site_path", [RIGA, DEMO], ids=["riga-1", "demo"])
def test_render_matches_golden(site_path):
    site = load_site(site_path)
    files = render_all(site, build_plan(site))
    folder = GOLDEN / site.site.name
    if os.environ.get("GIGAFACTORY_UPDATE_GOLDEN"):
        for rel, content in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(content)
    expected = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert sorted(files) == expected
    for rel, content in files.items():
        assert content == (folder / rel).read_text(), f"{rel} differs from tests/golden/{site.site.name}/{rel}"


def test_slurm_conf_groups_nodes_never_one_line_per_node():
    site = load_site(RIGA)
    conf = render_all(site, build_plan(site))["slurm/slurm.conf"]
    node_lines = [line for line in conf.splitlines() if line.startswith("NodeName=")]
    assert node_lines == [line for line in node_lines if "[" in line] and len(node_lines) == 1
    assert "SlurmctldHost=ctl01(10.40.2.1)\nSlurmctldHost=ctl02(10.40.2.2)" in conf
