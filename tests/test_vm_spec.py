"""VM specs: defaults, derived MACs, and errors that name the bad field (CLI exit 2, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.vm.spec import SpecError, parse_specs

ROOT = Path(__file__).resolve().parent.parent
GOOD = [
    {"name": "node-a", "nics": [{"segment": "fabric", "interface": "enp0s4",
                                 "address": "10.77.0.1/24"}]},
    {"name": "node-b", "memory_mb": 2048, "cpus": 2,
     "nics": [{"segment": "fabric", "interface": "enp0s4", "address": "10.77.0.2/24"},
              {"segment": "storage", "interface": "enp0s5", "mac": "52:54:00:00:00:05"}]},
]


def test_good_spec_parses_with_defaults_and_slots() -> None:
    a, b = parse_specs(GOOD)
    assert (a.memory_mb, a.cpus) == (1024, 1)
    assert [n.slot for n in b.nics] == [4, 5]
    assert str(a.nics[0].address.ip) == "10.77.0.1"
    assert b.mac_of(b.nics[1]) == "52:54:00:00:00:05"


def test_macs_are_derived_deterministically_and_distinct() -> None:
    first, second = parse_specs(GOOD), parse_specs(GOOD)
    macs = [s.mac_of(n) for s in first for n in s.nics] + [s.mgmt_mac for s in first]
    assert macs == [s.mac_of(n) for s in second for n in s.nics] + [s.mgmt_mac for s in second]
    assert len(set(macs)) == len(macs)
    assert all(int(m.split(":")[0], 16) & 0b11 == 0b10 for m in macs)  # local, unicast


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d[1]["nics"][0].update(interface="eth1"), "[1].nics[0]"),
        (lambda d: d[1]["nics"][0].update(interface="enp0s3"), "[1].nics[0]"),
        (lambda d: d[0].update(memory_mb=64), "[0].memory_mb"),
        (lambda d: d[0].update(name="Node_A"), "[0].name"),
        (lambda d: d[0]["nics"][0].update(address="10.77.0.300/24"), "[0].nics[0].address"),
        (lambda d: d[0].update(colour="red"), "[0].colour"),
        (lambda d: d[1].update(name="node-a"), "name: 'node-a' is used by more than one VM"),
        (lambda d: d[1]["nics"][0].update(address="10.77.0.1/24"), "nics.address: 10.77.0.1 is given to more"),
        (lambda d: d[1]["nics"].append(dict(d[1]["nics"][0])), "[1]: Value error, VM 'node-b' uses an interface twice"),
        (lambda d: d[0].update(boot="pxe"), "[0].boot"),
        (lambda d: d[0].update(boot="network"), "[0]: Value error, VM 'node-a' boots from the network: boot_interface"),
        (lambda d: d[0].update(boot="network", boot_interface="enp0s9"), "[0]: Value error, VM 'node-a' boots from"),
        (lambda d: d[0].update(boot_interface="enp0s4"), "[0]: Value error, VM 'node-a' boots from its disk"),
    ],
)
def test_bad_field_is_named(mutate, field: str) -> None:
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    with pytest.raises(SpecError) as err:
        parse_specs(data, "spec.json")
    assert f"spec.json: {field}" in str(err.value)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.cli.vm", *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_cli_bad_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(GOOD))
    bad[0]["nics"][0]["interface"] = "eth0"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(bad))
    result = _cli("up", "--spec", str(spec), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 2
    assert "[0].nics[0]" in result.stderr and "eth0" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_unreadable_and_non_json_specs_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("[{")
    for spec in (tmp_path / "missing.json", tmp_path / "broken.json"):
        result = _cli("up", "--spec", str(spec), "--state-dir", str(tmp_path / "state"))
        assert result.returncode == 2, result.stderr
        assert str(spec) in result.stderr and "Traceback" not in result.stderr


def test_cli_status_of_an_empty_state_dir_lists_nothing(tmp_path: Path) -> None:
    result = _cli("status", "--state-dir", str(tmp_path))
    assert result.returncode == 0 and json.loads(result.stdout) == []
