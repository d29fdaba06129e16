"""Benchmark: `gigafactory up` through 1, 2 and 4 execution hosts (local ``ansible-runner worker`` processes).

    python benchmarks/scale_out.py [--hosts 2000] [--tasks 2] [--executors 1,2,4] [--strategy linear]

Simulated hosts (``ansible_connection=local``) of a generated site run a phase of ``--tasks`` tasks (alternately
``ansible.builtin.stat``, a module process per host, and ``ansible.builtin.debug``, an action on the executor)
as one wave split by count among N execution hosts, each a local ``ansible-runner worker`` fed by transmit and
read back by process, as ``provisioning.execution`` makes ``up`` do over SSH. Measured in CPU time, not wall
time (the machine is shared): the controller's CPU to send the shards and read their events (thread CPU time of
the shard threads, ``summary.json``'s ``controller_seconds``) per 1,000 host-tasks (target <= 1 s), and the
workers' CPU (their processes and every descendant, from RUSAGE_CHILDREN, orphans adopted and reaped) per host-task. ``--strategy`` sets the
site's provisioning.strategy (mitogen_linear needs the [mitogen] extra). Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sites import large_site


def playbook(tasks: int) -> str:
    lines = ["- name: Scale-out phase", "  hosts: all", "  gather_facts: false", "  tasks:"]
    for i in range(tasks):
        if i % 2 == 0:
            lines += [f"    - name: Stat {i}", "      ansible.builtin.stat: {path: /etc/hostname}"]
        else:
            lines += [f"    - name: Debug {i}", "      ansible.builtin.debug: {msg: \"{{ inventory_hostname }}\"}"]
    return "\n".join(lines) + "\n"


def adopt_orphans() -> None:
    """Make this process the subreaper of everything it starts: a worker's descendants that outlive their parent
    (Mitogen's contexts, say) are reparented here instead of to init, and their CPU time counts once reaped."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)     # PR_SET_CHILD_SUBREAPER


def reap_orphans(patience: float = 30) -> None:
    """Wait for every adopted descendant to exit (so that RUSAGE_CHILDREN includes it), ``patience`` seconds at most."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.2)


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run(tmp: Path, hosts: int, tasks: int, executors: int, strategy: str = "linear") -> dict[str, float]:
    from infra.orchestrate import Phase, UpOptions, up
    from infra.runner.execution import Worker
    from infra.plan import build_plan
    data = large_site(max(hosts, 5))
    data["site"]["name"] = "bench"
    site_dir = tmp / f"site-{executors}"
    site_dir.mkdir()
    site_file = site_dir / "site.yml"
    names = list(build_plan(load_site_from(data, site_file), str(site_file)).hosts)[:hosts]
    data.setdefault("provisioning", {})["execution"] = {"hosts": names[:executors], "split": "count"}
    data["provisioning"]["strategy"] = strategy
    site_file.write_text(yaml.safe_dump(data))
    books = tmp / "playbooks"
    books.mkdir(exist_ok=True)
    (books / "scale.yml").write_text(playbook(tasks))
    inv = tmp / "local.yml"
    inv.write_text(yaml.safe_dump({"all": {"vars": {"ansible_connection": "local",
                                                    "ansible_python_interpreter": sys.executable}}}))

    def local(executor: str, ident: str) -> Worker:
        workdir = str(tmp / "work" / ident)
        return Worker([sys.executable, "-m", "ansible_runner", "worker", "--private-data-dir", workdir, "--delete"], workdir)

    self0, children0, t0 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), time.monotonic()
    outcome = up(UpOptions(site=site_file, phases=(Phase("scale"),), playbook_dir=books, inventories=[inv],
                           limit=",".join(names), batch=["100%"], max_fail=100, run_dir=tmp / "runs" / str(executors),
                           out=io.StringIO(), worker_command=local))
    wall = time.monotonic() - t0
    reap_orphans()
    self1, children1 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    if outcome.exit_code != 0:
        raise SystemExit(f"{executors} executors: run failed, see {outcome.run_dir}")
    phase = outcome.phases[0]
    return {"host_tasks": phase.host_tasks, "controller": phase.controller_seconds, "controller_process": self1 - self0,
            "workers": children1 - children0, "wall": wall}


def load_site_from(data: dict, site_file: Path):
    from infra.site import load_site
    site_file.write_text(yaml.safe_dump(data))
    return load_site(str(site_file))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=2000)
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--executors", default="1,2,4")
    p.add_argument("--strategy", default="linear", choices=["linear", "free", "mitogen_linear", "mitogen_free"])
    args = p.parse_args()
    adopt_orphans()
    os.environ.setdefault("ANSIBLE_CONFIG", str(Path(__file__).resolve().parents[1] / "ansible.cfg"))
    print(f"scale-out: {args.hosts} simulated hosts x {args.tasks} tasks, strategy {args.strategy}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    print("executors  host-tasks  controller CPU s  per 1000 host-tasks  (whole up process)  "
          "workers CPU s  per host-task  wall s")
    for k in (int(x) for x in args.executors.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"gf-scale-{k}-") as d:
            m = run(Path(d), args.hosts, args.tasks, k, args.strategy)
        n = max(1, m["host_tasks"])
        print(f"{k:9d}  {m['host_tasks']:10d}  {m['controller']:16.2f}  {1000 * m['controller'] / n:19.3f}  "
              f"{m['controller_process']:18.1f}  {m['workers']:13.1f}  {m['workers'] / n:13.4f}  {m['wall']:6.0f}",
              flush=True)


if __name__ == "__main__":
    main()
