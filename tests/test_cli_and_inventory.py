"""The command line and the Ansible inventory plugin, run as a user would."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from conftest import DEMO, RIGA, ROOT, bin_path, keyless_mirrors, run, site_data


def unwrap(value):
    """ansible-inventory marks plugin values unsafe (not templated): {"__ansible_unsafe": v} -> v."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def test_plan_json_is_the_whole_plan():
    result = run([bin_path("gigafactory"), "plan", "--json", str(RIGA)])
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["capacity"]["gpus"] == 1024
    assert plan["hosts"]["gpu0001"]["addresses"]["management"] == "10.40.1.1/16"


def test_plan_summary_table_is_readable():
    result = run([bin_path("gigafactory"), "plan", str(RIGA)])
    assert result.returncode == 0
    for text in ("capacity and power", "1,024", "spine switches", "riga-train"):
        assert text in result.stdout


def test_render_writes_every_file(tmp_path):
    result = run([bin_path("gigafactory"), "render", str(RIGA), "--out", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    for rel in ("plan.json", "hosts", "inventory.json", "slurm/slurm.conf", "slurm/gres.conf", "slurm/cgroup.conf", "slurm/topology.conf"):
        assert (tmp_path / rel).is_file(), rel


def test_schema_accepts_riga1():
    import jsonschema
    result = run([bin_path("gigafactory"), "schema"])
    schema = json.loads(result.stdout)
    jsonschema.validate(yaml.safe_load(RIGA.read_text()), schema)
    bad = yaml.safe_load(RIGA.read_text())
    bad["pools"][0]["hostz"] = 1
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as err:
        assert "hostz" in str(err.message)
    else:
        raise AssertionError("schema accepted an unknown key")


def test_ansible_inventory_graph_has_pools_and_roles():
    result = run([bin_path("ansible-inventory"), "-i", str(RIGA), "--list"])
    assert result.returncode == 0, result.stderr
    inv = unwrap(json.loads(result.stdout))
    groups = {g for g in inv if g not in ("_meta", "all")}
    for group in ("pool_train", "pool_infer", "pool_control", "slurm_controller", "slurm_dbd", "slurm_login",
                  "slurm_compute", "subnet_manager", "k8s_control_plane", "k8s_worker", "nfs_server", "gpu", "rdma"):
        assert group in groups, group
    assert inv["slurm_controller"]["hosts"] == ["ctl01", "ctl02"]
    assert len(inv["pool_train"]["hosts"]) == 96
    hv = inv["_meta"]["hostvars"]["gpu0001"]
    assert hv["ansible_host"] == "10.40.1.1" and hv["gf_rack"] == "a01" and hv["gf_gpus"] == 8 and len(hv["gf_rails"]) == 8


def test_ansible_inventory_graph_command():
    result = run([bin_path("ansible-inventory"), "-i", str(DEMO), "--graph"])
    assert result.returncode == 0, result.stderr
    assert "@slurm_compute:" in result.stdout and "node01" in result.stdout


def test_ansible_inventory_refuses_an_invalid_site(tmp_path, riga):
    riga["slurm"]["controllers"] = ["ctl09"]
    (tmp_path / "site.yml").write_text(yaml.safe_dump(riga))
    result = run([bin_path("ansible-inventory"), "-i", str(tmp_path / "site.yml"), "--list"])
    assert "slurm.controllers: controller 'ctl09' is not a host of any pool" in result.stderr
    assert "ctl01" not in result.stdout


def test_validate_says_the_sites_warnings_on_stderr_and_still_passes(tmp_path):
    riga = run([bin_path("gigafactory"), "validate", str(RIGA)])             # the README: copy it, validate until quiet
    assert riga.returncode == 0 and riga.stderr == "", riga.stderr
    keyless = tmp_path / "site.yml"
    keyless.write_text(yaml.safe_dump(keyless_mirrors(site_data(RIGA))))
    result = run([bin_path("gigafactory"), "validate", str(keyless)])
    assert result.returncode == 0, result.stderr
    assert "valid: site riga-1" in result.stdout
    assert "warning: repositories.kubernetes: cluster(s) 'riga-infer' declared" in result.stderr
    assert "warning: repositories.charts:" in result.stderr
    quiet = run([bin_path("gigafactory"), "validate", str(DEMO)])           # the demo has no Kubernetes: nothing to warn of
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_each_kubernetes_cluster_group_carries_its_kubeadm_settings():
    result = run([bin_path("ansible-inventory"), "-i", str(RIGA), "--host", "gpu0097"])
    assert result.returncode == 0, result.stderr
    cluster = unwrap(json.loads(result.stdout))["gf_kubernetes"]
    assert cluster == {"name": "riga-infer", "version": "1.33", "control_plane": ["k8s-cp01", "k8s-cp02", "k8s-cp03"],
                       "api_endpoint": "10.40.6.1", "pod_cidr": "10.112.0.0/12", "service_cidr": "10.96.0.0/16"}
    training = unwrap(json.loads(run([bin_path("ansible-inventory"), "-i", str(RIGA), "--host", "gpu0001"]).stdout))
    assert "gf_kubernetes" not in training


def test_a_command_module_that_fails_to_import_stops_the_cli_loudly(monkeypatch, capsys):
    """A broken orchestration module is an error with its cause, not a command line quietly missing `up`."""
    import sys

    from infra.cli import main
    monkeypatch.setitem(sys.modules, "infra.cli.orchestrate", None)        # `import` of it now raises ImportError
    assert main(["validate", str(RIGA)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gigafactory: the orchestration commands could not be loaded") and "infra.cli.orchestrate" in err
    assert "Traceback" not in err


def with_boot_server_and_execution_hosts(data: dict) -> dict:
    data.setdefault("provisioning", {}).update(images={"server": "ctl01"}, execution={"hosts": ["controller", "ctl02"]})
    return data


@pytest.mark.parametrize("data", [with_boot_server_and_execution_hosts(site_data(RIGA)), site_data(DEMO)],
                         ids=["riga-1-with-boot-and-execution", "demo"])
def test_ansible_sees_through_the_plugin_the_inventory_pulumi_hashes(tmp_path, data):
    """One inventory: what ``ansible-inventory`` lists through the plugin (hosts, groups, host and group variables)
    is what NodeConfiguration's PhaseInputs hashes. The site file alone in its folder: no group_vars/ beside it."""
    from infra.plan import build_plan
    from infra.site import validate_data
    from infra.stack.node_configuration import PhaseInputs
    site_file = tmp_path / "site.yml"
    site_file.write_text(yaml.safe_dump(data))
    result = run([bin_path("ansible-inventory"), "-i", str(site_file), "--list", "--export"])
    assert result.returncode == 0, result.stderr
    seen = unwrap(json.loads(result.stdout))
    site = validate_data(data)
    hashed = PhaseInputs.of(site, build_plan(site), tmp_path, "site.yml", playbooks=ROOT).inventory["all"]
    assert seen["_meta"]["hostvars"] == hashed["hosts"]
    assert seen["all"]["vars"] == hashed["vars"]
    groups = {g: v for g, v in seen.items() if g not in ("_meta", "all")}
    assert set(groups) == set(hashed["children"]) and set(seen["all"]["children"]) == {"ungrouped", *hashed["children"]}
    for group, child in hashed["children"].items():
        assert groups[group].get("hosts", []) == list(child["hosts"]), group
        assert groups[group].get("vars", {}) == child.get("vars", {}), group


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plan_html_says_its_stages_on_a_terminal_and_nothing_on_a_pipe(tmp_path, monkeypatch):
    """Progress for the commands that can take seconds (docs/pages.md): each stage and its seconds on stderr, only
    when stderr is a terminal."""
    from infra.cli import main
    for stream, said in ((_Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr("sys.stderr", stream)
        assert main(["plan", str(RIGA), "--html", str(tmp_path / "riga-1.html")]) == 0
        lines = stream.getvalue().splitlines()
        if said:
            assert [line.split("...")[0] for line in lines] == ["gigafactory plan: validating and planning the site",
                                                                "gigafactory plan: drawing the page"]
            assert all(line.endswith(" s") for line in lines), lines
        else:
            assert lines == []
