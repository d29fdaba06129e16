"""Slurm's block topology for rack-scale NVLink sites: one block per domain in rack order, BlockSizes within a
scalable unit, and what slurmctld 24.11 would stop on refused by validate (the field named)."""

from __future__ import annotations

import copy

import pytest

from infra.plan import build_plan
from infra.render.files import slurm_files
from infra.site import validate_data
from infra.site.blocks import block_level
from conftest import RIGA, site_data
from test_nvlink_placement import GB300, nvl72_riga, problems


def nvl72_blocks(racks: int = 8, scalable_unit: int = 72, **changes) -> dict:
    """riga-1 with 18-tray GB300 domains in ``racks`` racks, its Slurm topology from the site (auto), and a fabric
    whose switches take a scalable unit of ``scalable_unit`` trays."""
    data = nvl72_riga(racks=racks, hosts=18 * racks)
    data["slurm"]["topology"] = "auto"
    data["fabrics"][0].update(scalable_unit=scalable_unit)
    data["fabrics"][0]["switch"].update(ports=max(256, 2 * scalable_unit))
    data["site"]["power"]["facility_kw"] = max(data["site"]["power"]["facility_kw"], 250 * racks)
    data["slurm"].update(changes)
    return data


def topology_conf(data: dict) -> list[str]:
    files = slurm_files(build_plan(validate_data(data)))
    plugins = [line for line in files["slurm/slurm.conf"].splitlines() if line.startswith("TopologyPlugin=")]
    return plugins + [line for line in files.get("slurm/topology.conf", "").splitlines() if not line.startswith("#")]


def test_a_block_per_domain_in_rack_order_aggregated_up_to_a_scalable_unit():
    lines = topology_conf(nvl72_blocks(racks=8, scalable_unit=72))      # 4 domains per scalable unit
    assert lines == ["TopologyPlugin=topology/block",
                     *(f"BlockName=n{r:02d} Nodes=gb[{18 * r - 17:04d}-{18 * r:04d}]" for r in range(1, 9)),
                     "BlockSizes=18,36,72"]


def test_aggregation_stops_where_a_group_of_domains_would_leave_its_scalable_unit():
    # 36 trays per unit: 2 domains; 54: one and a half, so no two aligned domains share one unit
    assert topology_conf(nvl72_blocks(scalable_unit=36))[-1] == "BlockSizes=18,36"
    assert topology_conf(nvl72_blocks(scalable_unit=54))[-1] == "BlockSizes=18"
    # one unit holds all 8 domains: the aggregation stops at the level that holds them all
    assert topology_conf(nvl72_blocks(scalable_unit=144))[-1] == "BlockSizes=18,36,72,144"


def test_blocks_follow_the_racks_not_the_pools_host_order():
    data = nvl72_blocks(racks=4, scalable_unit=72)
    data["pools"][0]["racks"] = ["n03", "n04", "n01", "n02"]             # the first trays fill n03
    lines = topology_conf(data)
    assert [line.split()[0] for line in lines[1:-1]] == ["BlockName=n01", "BlockName=n02", "BlockName=n03", "BlockName=n04"]
    assert lines[1] == "BlockName=n01 Nodes=gb[0037-0054]"


def test_declared_block_sizes_are_written_as_declared():
    assert topology_conf(nvl72_blocks(block_sizes=[18, 72]))[-1] == "BlockSizes=18,72"


def test_a_slurm_pool_of_ordinary_servers_is_in_no_block():
    data = nvl72_blocks(racks=2, scalable_unit=36)
    data["pools"].append({"name": "cpu", "type": "cpu-1u", "hosts": "cpu[01-04]", "racks": "b[01-02]"})
    data["slurm"]["partitions"].append({"name": "cpu", "pools": ["cpu"]})
    lines = topology_conf(data)
    assert [line for line in lines if line.startswith("BlockName=")] == [
        "BlockName=n01 Nodes=gb[0001-0018]", "BlockName=n02 Nodes=gb[0019-0036]"]


def test_riga1_keeps_its_tree_and_auto_without_nvlink_is_a_tree():
    riga = site_data(RIGA)
    tree = topology_conf(riga)
    assert tree[0] == "TopologyPlugin=topology/tree" and tree[-1].startswith("SwitchName=spine ")
    riga["slurm"]["topology"] = "auto"
    assert topology_conf(riga) == tree
    riga["slurm"]["topology"] = "none"
    assert topology_conf(riga) == []


def test_an_nvlink_site_may_keep_the_tree():
    lines = topology_conf(nvl72_blocks(racks=2, scalable_unit=36, topology="tree"))
    assert lines[0] == "TopologyPlugin=topology/tree" and not any(line.startswith("Block") for line in lines)


def _second_nvlink_pool(data: dict, trays: int) -> dict:
    """A second GB300 pool of ``trays``-tray domains in racks m01-m02, in the Slurm partitions."""
    data["node_types"]["gb300-small"] = {**copy.deepcopy(GB300), "nvlink": {"trays": trays, "switch_trays": 9}}
    data["racks"].append({**copy.deepcopy(data["racks"][-1]), "names": "m[01-02]"})
    data["pools"].insert(1, {"name": "small", "type": "gb300-small", "hosts": f"gs[001-{2 * trays:03d}]", "racks": "m[01-02]"})
    data["slurm"]["partitions"][1]["pools"] = ["small"]
    return data


def test_nvlink_pools_of_one_cluster_with_different_domain_sizes_are_refused():
    found = problems(_second_nvlink_pool(nvl72_blocks(racks=2, scalable_unit=36), trays=17))
    assert any(p.startswith("node_types.gb300-small.nvlink.trays: the NVLink domains of pool 'small' are 17 trays and "
                            "those of pool 'train' (gb300) 18") for p in found), found


def test_block_sizes_that_do_not_aggregate_domains_are_refused():
    found = problems(nvl72_blocks(block_sizes=[18, 36, 54, 18 * 2 ** 16]))
    assert [p.split(":")[0] for p in found] == ["slurm.block_sizes[2]", "slurm.block_sizes[3]"], found
    assert "54 is not 18 x 2^k" in found[0]
    found = problems(nvl72_blocks(block_sizes=[17, 34]))
    assert len(found) == 1 and found[0].startswith("slurm.block_sizes[0]: the first block size is the base block, "
                                                   "one NVLink domain of 18 trays"), found


def test_block_topology_needs_nvlink_domains_and_block_sizes_need_blocks():
    riga = site_data(RIGA)
    riga["slurm"]["topology"] = "block"
    assert [p.split(":")[0] for p in problems(riga)] == ["slurm.topology"]
    riga["slurm"]["block_sizes"] = [8]                  # sizes for blocks that are not there: the same one problem
    assert [p.split(":")[0] for p in problems(riga)] == ["slurm.topology"]
    found = problems(nvl72_blocks(racks=2, scalable_unit=36, topology="tree", block_sizes=[18]))
    assert found == ["slurm.block_sizes: block sizes are for the block topology; this cluster's topology is tree "
                     "(slurm.topology: tree)"]


@pytest.mark.parametrize(("size", "level"), [(18, 0), (36, 1), (72, 2), (18 * 2 ** 15, 15), (18 * 2 ** 16, None),
                                             (54, None), (9, None), (0, None), (-18, None)])
def test_block_level_reads_blocksizes_as_slurm_24_11_5(size, level):
    """block_record.c _read_topo_file: a multiple of the base whose quotient is 2^k, k <= 15, else fatal."""
    assert block_level(size, 18) == level
