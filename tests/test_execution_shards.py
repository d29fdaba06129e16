"""How a wave's hosts are split among execution hosts (provisioning.execution): by count, rack or scalable unit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import RIGA

from infra.runner.execution import controller_inventory, default_worker_command, shards
from infra.project import REPO_ROOT
from infra.plan import build_plan
from infra.site import load_site
from infra.site.model import Execution


@pytest.fixture(scope="module")
def riga():
    return build_plan(load_site(RIGA), RIGA)


def test_one_execution_host_takes_the_whole_wave(riga):
    hosts = list(riga.hosts)
    assert [(s.executor, s.hosts) for s in shards(riga, hosts, Execution())] == [("controller", hosts)]


def test_by_count_cuts_equal_runs_in_wave_order(riga):
    hosts = list(riga.hosts)[:10]
    parts = shards(riga, hosts, Execution(hosts=["controller", "ctl01", "ctl02"], split="count"))
    assert [len(s.hosts) for s in parts] == [3, 3, 4]
    assert [h for s in parts for h in s.hosts] == hosts
    assert [s.executor for s in shards(riga, hosts[:2], Execution(hosts=["controller", "ctl01", "ctl02"]))] \
        == ["ctl01", "ctl02"]           # no empty shard


def test_by_scalable_unit_an_executor_takes_its_own_unit_and_whole_units_stay_together(riga):
    gpus = [h for h in riga.hosts if riga.hosts[h].scalable_unit]
    parts = {s.executor: s.hosts for s in
             shards(riga, gpus, Execution(hosts=["gpu0040", "gpu0100"], split="scalable_unit"))}
    units = {e: sorted({riga.hosts[h].scalable_unit for h in hs}) for e, hs in parts.items()}
    assert 2 in units["gpu0040"] and 4 in units["gpu0100"]
    assert sorted(len(hs) for hs in parts.values()) == [64, 64]          # the other two units balance the load
    assert sorted(h for hs in parts.values() for h in hs) == sorted(gpus)


def test_by_rack_keeps_racks_whole(riga):
    hosts = list(riga.hosts)
    parts = shards(riga, hosts, Execution(hosts=["controller", "ctl01"], split="rack"))
    racks = [{riga.hosts[h].rack for h in s.hosts} for s in parts]
    assert not racks[0] & racks[1]
    assert "b01" in racks[1]                                               # ctl01's own rack
    assert sorted([h for s in parts for h in s.hosts]) == sorted(hosts)


def test_a_site_host_is_reached_over_ssh_with_known_host_keys_the_controller_locally(riga, tmp_path):
    command = default_worker_command(riga, "root", tmp_path)
    worker = command("ctl01", "01-base-w1-ctl01")
    argv = worker.argv
    assert argv[0] == "ssh" and "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
    assert riga.hosts["ctl01"].address("management") in argv
    # the virtualenv the base phase installed there (role execution_host), the project at its current revision
    assert argv[-1].startswith("/opt/gigafactory/venv/bin/ansible-runner worker --private-data-dir /var/tmp/gigafactory/")
    assert (worker.project, worker.bin_dir) == ("/opt/gigafactory/project/current", "/opt/gigafactory/venv/bin")
    assert worker.path(REPO_ROOT / "playbooks" / "base.yml") == "/opt/gigafactory/project/current/playbooks/base.yml"
    assert worker.path(tmp_path / "site.yml") == str(tmp_path / "site.yml")     # outside the project: as it is
    worker = command("controller", "01-base-w1-controller")
    assert worker.argv[1:4] == ["-m", "ansible_runner", "worker"] and worker.workdir == str(tmp_path / "01-base-w1-controller")
    assert worker.project is None and worker.path(REPO_ROOT / "ansible.cfg") == str(REPO_ROOT / "ansible.cfg")


def test_a_remote_workers_job_names_its_paths_and_the_virtualenv_there(riga, tmp_path):
    from infra.runner.ansible import _job
    worker = default_worker_command(riga, "root", tmp_path)("ctl01", "01-base-w1-ctl01")
    job = _job(REPO_ROOT / "playbooks" / "base.yml", [REPO_ROOT / "inventories" / "demo" / "site.yml"], "ctl01", {},
               False, REPO_ROOT / "ansible.cfg", "mitogen_linear", worker)
    assert job["playbook"] == "/opt/gigafactory/project/current/playbooks/base.yml"
    assert job["inventory"] == ["/opt/gigafactory/project/current/inventories/demo/site.yml"]
    env = job["envvars"]
    assert env["ANSIBLE_CONFIG"] == "/opt/gigafactory/project/current/ansible.cfg"
    assert env["PATH"].split(":")[0] == "/opt/gigafactory/venv/bin" and env["PYTHONPATH"] == "/opt/gigafactory/project/current"
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    here = _job(REPO_ROOT / "playbooks" / "base.yml", [], "ctl01", {}, False, REPO_ROOT / "ansible.cfg")
    assert here["envvars"]["PATH"].split(":")[0] == str(Path(sys.executable).parent) and "PYTHONPATH" not in here["envvars"]
    assert here["envvars"]["ANSIBLE_STRATEGY"] == "linear"


def test_execution_hosts_are_a_plan_group_whose_variables_pin_the_controllers_versions(tmp_path):
    from importlib.metadata import version

    import yaml
    from conftest import site_data

    from infra.orchestrate import PHASES
    from infra.render.inventory import inventory_view
    data = site_data(RIGA)
    data.setdefault("provisioning", {})["execution"] = {"hosts": ["controller", "ctl02", "gpu0100"]}
    site_file = tmp_path / "site.yml"
    site_file.write_text(yaml.safe_dump(data))
    site = load_site(str(site_file))
    plan = build_plan(site, str(site_file))
    assert plan.groups["execution"] == ("ctl02", "gpu0100")
    [base] = [p for p in PHASES if p.name == "base"]
    hosts = list(plan.hosts)
    # The base phase prepares execution hosts first, from the controller, before the hosts they serve.
    in_plan_order = [h for h in hosts if h in ("ctl02", "gpu0100")]
    assert base.providers(plan, hosts) == in_plan_order == base.local_hosts(plan, hosts)
    # the render is the plan's alone: where the execution hosts' Ansible goes, never this machine's versions
    assert inventory_view(site, plan)["all"]["children"]["execution"]["vars"]["gf_execution"] == {
        "venv": "/opt/gigafactory/venv", "project": "/opt/gigafactory/project"}
    # applied, the controller's own versions are pinned there
    pinned = controller_inventory(site, plan)["all"]["children"]["execution"]["vars"]["gf_execution"]
    assert pinned["venv"] == "/opt/gigafactory/venv" and pinned["project"] == "/opt/gigafactory/project"
    assert pinned["packages"]["ansible-core"] == version("ansible-core")
    assert pinned["packages"]["ansible-runner"] == version("ansible-runner") and "mitogen" not in pinned["packages"]
    assert "execution" not in build_plan(load_site(RIGA), RIGA).groups     # the default: the controller alone


def test_the_project_archive_is_reproducible_and_named_by_its_contents(tmp_path):
    import tarfile

    from infra.project import project_archive
    tree = tmp_path / "tree"
    (tree / "playbooks" / "roles" / "__pycache__").mkdir(parents=True)
    (tree / "infra").mkdir()
    (tree / "ansible.cfg").write_text("[defaults]\n")
    (tree / "playbooks" / "base.yml").write_text("---\n")
    (tree / "playbooks" / "roles" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tree / "infra" / "__init__.py").write_text("")
    a = project_archive(tree, tmp_path / "a")
    b = project_archive(tree, tmp_path / "b")
    assert a.revision == b.revision and a.path.read_bytes() == b.path.read_bytes()
    with tarfile.open(a.path) as tar:
        assert sorted(tar.getnames()) == ["ansible.cfg", "infra/__init__.py", "playbooks/base.yml"]
    (tree / "playbooks" / "base.yml").write_text("--- # changed\n")
    assert project_archive(tree, tmp_path / "a").revision != a.revision


def _demo_connection(tmp_path: Path) -> tuple[Path, Path, str]:
    """A connection inventory, known_hosts and key as the test bed writes them (forwarded ports on loopback)."""
    import yaml
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-but-secret\n-----END OPENSSH PRIVATE KEY-----\n")
    known = tmp_path / "known_hosts"
    ports = {"ctl01": 58219, "node01": 33765, "node02": 49133}
    known.write_text("".join(f"[127.0.0.1]:{p} ssh-ed25519 AAAA{h}KEY\n" for h, p in ports.items()))
    conn = tmp_path / "connection.yml"
    conn.write_text(yaml.safe_dump({"all": {"hosts": {h: {
        "ansible_host": "127.0.0.1", "ansible_port": p, "ansible_user": "gigafactory", "ansible_become": True,
        "ansible_ssh_private_key_file": str(key), "gigafactory_part": "configure",
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"}
        for h, p in ports.items()}}}))
    return conn, key, key.read_text()


def test_a_remote_executor_is_reached_as_the_connection_inventory_says_and_reaches_the_others_on_management(tmp_path):
    import yaml
    from conftest import DEMO
    demo = build_plan(load_site(DEMO), DEMO)
    conn, key, secret = _demo_connection(tmp_path)
    worker = default_worker_command(demo, "root", tmp_path, [conn])("ctl01", "02-base-w2-ctl01")
    # this machine reaches ctl01 through its forwarded port, with its key and pinned host key
    argv = worker.argv
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    assert argv[argv.index("-p") + 1] == "58219" and argv[argv.index("-i") + 1] == str(key)
    assert argv[argv.index("-l") + 1] == "gigafactory" and "127.0.0.1" in argv and f"UserKnownHostsFile={tmp_path / 'known_hosts'}" in argv
    # ctl01 reaches every host at its management address, port 22, with the host keys pinned here
    shipped = yaml.safe_load(worker.files["connection.yml"])["all"]["hosts"]
    for name in ("ctl01", "node01", "node02"):
        address = demo.hosts[name].address("management")
        assert address.startswith("192.168.100.")
        assert shipped[name] == {"ansible_host": address, "ansible_user": "gigafactory", "ansible_become": True,
                                 "gigafactory_part": "configure", "ansible_ssh_common_args":
                                 f"-o UserKnownHostsFile={worker.workdir}/known_hosts -o StrictHostKeyChecking=yes"}
        assert f"{address} ssh-ed25519 AAAA{name}KEY" in worker.files["known_hosts"].splitlines()
    # the key goes with the job (ansible-runner's ssh_key), never on a command line or in the shipped files
    assert worker.ssh_key == secret
    assert not any("not-a-real-key" in a for a in argv) and not any("not-a-real-key" in t for t in worker.files.values())
    assert "not-a-real-key" not in repr(worker)


def test_the_key_reaches_the_workers_ssh_agent_and_no_file_of_the_run(tmp_path):
    """A worker (a local ansible-runner worker standing in for the executor) gets the key in the streamed job: its
    ansible-playbook runs under an ssh-agent holding it; no file of the run directory, here or in the worker's
    directory while it runs, holds the key."""
    import shutil
    import subprocess

    from infra.runner.execution import Worker, worker_argv
    from infra.runner.ansible import run_shard
    if not (shutil.which("ssh-agent") and shutil.which("ssh-keygen")):
        pytest.skip("needs ssh-agent and ssh-keygen")
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "executor-test", "-f", str(key)], check=True)
    secret = key.read_text()
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True).stdout.split()[1]
    key.unlink()                      # only the text in memory from here on, as up reads it
    playbook = tmp_path / "agent.yml"
    playbook.write_text("""- hosts: all
  gather_facts: false
  tasks:
    - name: The keys the agent holds
      ansible.builtin.command: ssh-add -l
      changed_when: false
""")
    conn = f"all:\n  hosts:\n    localhost:\n      ansible_connection: local\n      ansible_python_interpreter: {sys.executable}\n"
    workdir = str(tmp_path / "work" / "shard")
    seen: list[str] = []

    def sink(event):
        res = (event.get("event_data") or {}).get("res") or {}
        if res.get("stdout"):
            seen.append(res["stdout"])
        # while the worker runs: nothing under its directory holds the key (the FIFO is read and removed); the
        # worker writes and removes files meanwhile (--delete at its end): one gone before it is read held nothing
        for path in Path(tmp_path / "work").rglob("*"):
            try:
                text = path.read_text(errors="replace") if path.is_file() else ""
            except (FileNotFoundError, NotADirectoryError):
                continue
            assert "PRIVATE KEY" not in text, path
    worker = Worker([sys.executable, "-m", "ansible_runner", *worker_argv(workdir)[1:]], workdir,
                    files={"connection.yml": conn}, ssh_key=secret)
    result = run_shard(executor="stand-in", worker=worker, playbook=playbook, inventories=[], hosts=["localhost"],
                       private_data_dir=tmp_path / "run", ident="01-x-w1-stand-in", ansible_config=REPO_ROOT / "ansible.cfg",
                       extravars={}, check=False, sink=sink)
    assert not result.failed, result.failed
    assert any(fingerprint in s for s in seen), seen
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert "PRIVATE KEY" not in path.read_text(errors="replace"), path
