"""Issue 22: YAML is data and only data (no key twice, no bombs), problem lines the input cannot forge, and names
that collide with names Ansible, Kubernetes or the system give meaning to."""

from __future__ import annotations

import copy

import pytest
import yaml

from infra.cli import main
from infra.site import SiteInvalid, parse_site
from conftest import RIGA
from test_site_validation import problems_of

RIGA_TEXT = RIGA.read_text(encoding="utf-8")


def validate(tmp_path, text: str, capsys) -> tuple[int, list[str]]:
    """``gigafactory validate`` on ``text``: its exit code and the lines it wrote on stderr."""
    site = tmp_path / "site.yml"
    site.write_text(text, encoding="utf-8")
    code = main(["validate", str(site)])
    return code, capsys.readouterr().err.splitlines()


def test_a_key_declared_twice_is_refused_with_its_path_and_both_lines(tmp_path, capsys):
    text = RIGA_TEXT.replace("repositories:", "repositories:\n  debian: http://elsewhere.example/debian", 1)
    code, err = validate(tmp_path, text, capsys)
    first = next(n for n, line in enumerate(RIGA_TEXT.splitlines(), 2) if line.startswith("repositories:"))
    assert code == 2
    assert err[1:] == [f"  repositories.debian: key 'debian' is declared twice (lines {first} and {first + 1}); "
                       "a mapping's keys are unique: keep one"]


def test_a_merge_key_may_still_be_overridden():
    assert yaml.safe_load("a: &x {b: 1}\nc: {<<: *x, b: 2}") == {"a": {"b": 1}, "c": {"b": 2}}
    from infra.site.yamldata import load_yaml
    assert load_yaml("a: &x {b: 1}\nc: {<<: *x, b: 2}") == {"a": {"b": 1}, "c": {"b": 2}}


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


@pytest.mark.parametrize("text, fragment", [
    (BILLION_LAUGHS, "expands to more than 1,000,000 values"),
    ("a: " + "[" * 5000 + "]" * 5000, "nested more than 64 levels deep"),
    ("a: " + "{b: " * 5000 + "1" + "}" * 5000, "nested more than 64 levels deep"),
    ("&a [*a]", "nests more than 64 levels deep once its aliases are expanded"),
    ("# padding\n" * 500_000, "longer than 4,194,304 characters"),
], ids=["billion laughs", "5000 lists deep", "5000 mappings deep", "alias inside its anchor", "5 MB"])
def test_yaml_bombs_are_refused_before_they_expand(tmp_path, capsys, text, fragment):
    code, err = validate(tmp_path, text, capsys)
    assert code == 2 and len(err) == 2 and fragment in err[1], err


def test_a_key_cannot_forge_or_reorder_problem_lines(tmp_path, capsys):
    forged = "zzz\n  site.name: the site is fine\u202e"
    text = RIGA_TEXT.replace("site:\n", f"site:\n  {yaml.safe_dump(forged).strip()}: 1\n", 1)
    code, err = validate(tmp_path, text, capsys)
    assert code == 2 and len(err) == 2, err
    assert err[1].startswith("  site['zzz\\n  site.name: the site is fine\\u202e']: unknown key"), err
    assert all(ch.isprintable() for line in err for ch in line)


@pytest.mark.parametrize("mutate, path, fragment", [
    (lambda d: d["kubernetes"][0].update(name="worker"), "kubernetes[0].name",
     "cluster 'worker' and role 'k8s_worker' both give Ansible group 'k8s_worker'"),
    (lambda d: d["kubernetes"][0].update(name="control-plane"), "kubernetes[0].name",
     "cluster 'control-plane' and role 'k8s_control_plane' both give Ansible group 'k8s_control_plane'"),
    (lambda d: d["pools"][2]["hosts"].append("slurm"), "pools[2].hosts", "host 'slurm' has the name of Ansible group 'slurm'"),
    (lambda d: d["pools"][2]["hosts"].append("localhost"), "pools[2].hosts", "host name 'localhost' already means something"),
    (lambda d: d["pools"][2]["hosts"].append("controller"), "pools[2].hosts", "host name 'controller' already means something"),
    (lambda d: d["tenants"][0]["kubernetes"].update(namespace="kube-acme"), "tenants[0].kubernetes.namespace",
     "namespace 'kube-acme' belongs to Kubernetes"),
    (lambda d: d["tenants"][0]["kubernetes"].update(namespace="default"), "tenants[0].kubernetes.namespace",
     "namespace 'default' belongs to Kubernetes"),
    (lambda d: d["tenants"][0]["kubernetes"].update(group="system:authenticated"), "tenants[0].kubernetes.group",
     "group 'system:authenticated' is one Kubernetes gives meaning to"),
    (lambda d: d["pools"][0].update(macs={"gpu0001": "01:00:5e:00:00:01"}), "pools[0].macs.gpu0001", "multicast or broadcast"),
    (lambda d: d["pools"][0].update(macs={"gpu0001": "FF:FF:FF:FF:FF:FF"}), "pools[0].macs.gpu0001", "multicast or broadcast"),
    (lambda d: d["pools"][0].update(macs={"gpu0001": "00:00:00:00:00:00"}), "pools[0].macs.gpu0001", "all zeros"),
    (lambda d: (d["pools"][0].update(macs={"gpu0001": "52:54:00:00:00:01"}), d["pools"][2].update(macs={"ctl01": "52:54:00:00:00:01"})),
     "pools[2].macs.ctl01", "already host 'gpu0001'"),
    (lambda d: (d["pools"][0].update(macs={"gpu0001": "52:54:00:00:00:0a"}), d["pools"][2].update(macs={"ctl01": "52:54:00:00:00:0A"})),
     "pools[2].macs.ctl01", "already host 'gpu0001'"),
    (lambda d: (d["tenants"][0].update(partition_key="0x0100"), d["tenants"][1].update(partition_key="0x100")),
     "tenants[1].partition_key", "already tenant 'acme-ai'"),
], ids=["cluster worker", "cluster control-plane", "host named like a group", "localhost", "controller", "kube- namespace",
        "default namespace", "system: group", "multicast mac", "broadcast mac", "zero mac", "mac in two pools",
        "mac in two pools, other case", "partition key twice"])
def test_names_the_system_gives_meaning_to_are_refused(riga, mutate, path, fragment):
    data = copy.deepcopy(riga)
    mutate(data)
    found = problems_of(data)
    assert any(p.startswith(f"{path}: ") and fragment in p for p in found), found


def test_the_inventory_plugin_reads_through_the_same_loader(tmp_path):
    """A duplicate key fails Ansible's inventory parsing with the same problem (load_site, the plugin's reader)."""
    from infra.site import load_site
    site = tmp_path / "site.yml"
    site.write_text(RIGA_TEXT.replace("site:\n", "site:\n  name: other\n", 1), encoding="utf-8")
    with pytest.raises(SiteInvalid, match=r"site.name: key 'name' is declared twice"):
        load_site(site)
    with pytest.raises(SiteInvalid, match="declared twice"):
        parse_site(site.read_text())
