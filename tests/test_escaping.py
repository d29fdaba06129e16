"""Defence in depth: the render layer's templates refuse, with the field named, a value that would add a line or a
word to slurm.conf, gres.conf or topology.conf, even when the model let it through (these tests bypass the model and
put hostile values straight into the plan); the systemd escapes agree with the real systemd-escape."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess

import pytest
from conftest import RIGA

from infra.cli import main
from infra.plan import build_plan
from infra.render import render_all
from infra.render.escape import UnsafeValue, gres_fields, one_line, one_word, systemd_escape, systemd_escape_path, systemd_quote
from infra.site import load_site

# Kept from one test to the next: riga-1's plan (read-only; each test replaces what it changes).
_PLAN = {}


def riga_plan():
    if "riga" not in _PLAN:
        site = load_site(RIGA)
        _PLAN["riga"] = (site, build_plan(site))
    return _PLAN["riga"]


def with_slurm(plan, **changes):
    return dataclasses.replace(plan, slurm=dataclasses.replace(plan.slurm, **changes))


def with_first_node_group(plan, **changes):
    groups = list(plan.slurm.nodes)
    groups[0] = dataclasses.replace(groups[0], **changes)
    return with_slurm(plan, nodes=tuple(groups))


def with_first_partition(plan, **changes):
    parts = list(plan.slurm.partitions)
    parts[0] = dataclasses.replace(parts[0], **changes)
    return with_slurm(plan, partitions=tuple(parts))


HOSTILE = {
    # name: (plan change, what the refusal names)
    "newline in StateSaveLocation adds a line": (lambda p: with_slurm(p, state_save_location="/var/spool/x\nSlurmUser=root"), "U+000A"),
    "blank in StateSaveLocation adds a key": (lambda p: with_slurm(p, state_save_location="/var/spool/x SlurmUser=root"),
                                              "slurm.state_save_location"),
    "carriage return in the cluster name": (lambda p: with_slurm(p, cluster="riga\rSlurmUser=root"), "U+000D"),
    "unicode line separator in a partition name": (lambda p: with_first_partition(p, name="batch\u2028Default=YES"), "U+2028"),
    "a comment in a partition's nodes": (lambda p: with_first_partition(p, nodes="gpu[0001-0002] #"), "partition nodes"),
    "a colon in the GPU model breaks gres.conf": (lambda p: with_first_node_group(p, gres="gpu:h200:x:8"), "not name:type:count"),
    "a comma in the GPU type adds a GRES": (lambda p: with_first_node_group(p, gres="gpu:h200,gpu:8"), "GRES type 'h200,gpu' holds ','"),
    "a comma in a node feature adds a feature": (lambda p: with_first_node_group(p, features=("h200,evil",)), "node feature"),
    "a newline in the site's name (header comment)": (lambda p: dataclasses.replace(p, site="riga\nSlurmUser=root"), "U+000A"),
    "a blank in PriorityWeightTRES adds a key": (lambda p: with_slurm(p, priority_weight_tres="CPU=1 SlurmUser=root"), "PriorityWeightTRES"),
    "a word as a node's CPU count": (lambda p: with_first_node_group(p, cpus="8 Weight=0"), "node CPUs"),
    "a word as AcctGatherNodeFreq": (lambda p: with_slurm(p, energy_gather="acct_gather_energy/ipmi", energy_frequency_s="30 x"),
                                     "energy.node_frequency_s"),
    "a blank in a PrologFlags flag": (lambda p: with_slurm(p, prolog_flags=("Alloc Contain",)), "PrologFlags"),
    "a comment in a host name of /etc/hosts": (lambda p: dataclasses.replace(
        p, hosts={k: dataclasses.replace(h, name=h.name + " #") for k, h in list(p.hosts.items())[:1]}), "host name"),
    "a newline in a topology switch": (lambda p: with_slurm(p, topology=(("su1\nSwitchName=evil", "Nodes=gpu0001"),)), "U+000A"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_render_refuses_a_hostile_value_naming_it(case):
    site, plan = riga_plan()
    change, named = HOSTILE[case]
    with pytest.raises(UnsafeValue, match=re.escape(named)):
        render_all(site, change(plan))


def test_riga1_renders_through_the_checks_unchanged():
    site, plan = riga_plan()
    files = render_all(site, plan)
    assert "StateSaveLocation=" in files["slurm/slurm.conf"] and "Type=h200" in files["slurm/gres.conf"]


def test_cli_render_of_a_hostile_plan_exits_2_naming_the_value_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import infra.plan
    real = infra.plan.build_plan
    monkeypatch.setattr(infra.plan, "build_plan", lambda site, path=None: with_slurm(real(site, path), state_save_location="/x\nSlurmUser=root"))
    out = tmp_path / "out"
    assert main(["render", str(RIGA), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot be written safely" in err and "U+000A" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\tb", "a\x1bb", "a\u0085b", "a\u2029b", "a\u202eb", "a\x00b"])
def test_one_line_refuses_every_breaking_character(value):
    with pytest.raises(UnsafeValue):
        one_line(value, "field")


@pytest.mark.parametrize("value", ["a b", "a#b", 'a"b', "a'b", "a\\", "", "a\u00a0b"])
def test_one_word_refuses_blanks_comments_quotes_and_continuations(value):
    with pytest.raises(UnsafeValue):
        one_word(value, "field")


def test_one_word_and_gres_keep_ordinary_values():
    assert one_word("http://mirror.example/debian") == "http://mirror.example/debian"
    assert gres_fields("gpu:h200:8") == ("gpu", "h200", 8)


def test_systemd_quote_keeps_specifiers_variables_and_quotes_literal():
    assert systemd_quote('a"b\\c%n$HOME') == '"a\\"b\\\\c%%n$$HOME"'


SYSTEMD_ESCAPE = shutil.which("systemd-escape")
TRICKY_PATHS = ["/var/spool/slurmctld", "/var/spool/slurm-state", "/srv/a.b/c", "/.hidden/state", "/srv//double//slash/",
                "/srv/./dot", "/srv/with space", "/srv/café/ü", "/srv/-lead", "/srv/x\\y", "/srv/%n$x", "/", "/a:b_c"]


@pytest.mark.skipif(SYSTEMD_ESCAPE is None, reason="systemd-escape is not installed")
@pytest.mark.parametrize("path", TRICKY_PATHS)
def test_mount_unit_names_match_systemd_escape_path(path):
    real = subprocess.run([SYSTEMD_ESCAPE, "--path", "--", path], capture_output=True, text=True, check=True).stdout.strip()
    assert systemd_escape_path(path) == real


@pytest.mark.skipif(SYSTEMD_ESCAPE is None, reason="systemd-escape is not installed")
@pytest.mark.parametrize("name", ["enp0s5", "br-lan", ".dot", "ib0.8001", "a;b", "é"])
def test_device_unit_names_match_systemd_escape(name):
    real = subprocess.run([SYSTEMD_ESCAPE, "--", name], capture_output=True, text=True, check=True).stdout.strip()
    assert systemd_escape(name) == real


@pytest.mark.parametrize("path", ["var/spool", "/srv/../etc", "/srv/a\nb", ""])
def test_systemd_escape_path_refuses_what_is_not_a_normalized_absolute_path(path):
    with pytest.raises(UnsafeValue):
        systemd_escape_path(path)
