"""Benchmark: controller overhead of a no-change phase run, the project's ansible.cfg against Ansible's defaults.

    /work/venv/bin/python benchmarks/controller_overhead.py [--hosts 500] [--skip-tool]

A representative phase (ten typical tasks: file, copy, lineinfile, blockinfile, template, replace, command
with changed_when false, stat, set_fact, assert; facts as the config decides) runs against N simulated hosts
(``ansible_connection=local``, a directory per host). Per configuration: one converging run (untimed), then the
timed idempotent run, which must report changed=0. Defaults = ANSIBLE_CONFIG pointing to an empty file.
The project's fact cache is pointed into the temp dir so the benchmark leaves .cache/ alone.

Then the tool's own overhead: ``gigafactory up`` (infra.orchestrate.up) with that playbook as its only phase on a
generated site of N hosts; time outside Ansible tasks as a share of the run, from event timestamps.
Issue target: the project's config >= 3x faster than defaults. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sites import ROOT, large_site  # noqa: E402  (benchmarks are scripts, not a package)

PLAYBOOK = """\
- name: Representative phase (no-change run)
  hosts: all
  tasks:
    - name: Directory
      ansible.builtin.file: {path: "{{ bench_dir }}/etc", state: directory, mode: "0755"}
    - name: Static file
      ansible.builtin.copy: {dest: "{{ bench_dir }}/etc/motd", content: "gigafactory\\n", mode: "0644"}
    - name: A line
      ansible.builtin.lineinfile: {path: "{{ bench_dir }}/etc/sysctl.conf", line: "vm.swappiness = 1", create: true, mode: "0644"}
    - name: A block
      ansible.builtin.blockinfile:
        path: "{{ bench_dir }}/etc/limits.conf"
        block: "* soft memlock unlimited\\n* hard memlock unlimited"
        create: true
        mode: "0644"
    - name: Template
      ansible.builtin.template: {src: "{{ playbook_dir }}/node.conf.j2", dest: "{{ bench_dir }}/etc/node.conf", mode: "0644"}
    - name: Replace
      ansible.builtin.replace: {path: "{{ bench_dir }}/etc/node.conf", regexp: "^#?Tuning=.*$", replace: "Tuning=on"}
    - name: Read-only command
      ansible.builtin.command: {cmd: "cat {{ bench_dir }}/etc/motd"}
      changed_when: false
    - name: Stat
      ansible.builtin.stat: {path: "{{ bench_dir }}/etc/node.conf"}
      register: bench_conf
    - name: Fact
      ansible.builtin.set_fact: {bench_ok: "{{ bench_conf.stat.exists }}"}
    - name: Assert
      ansible.builtin.assert: {that: bench_ok | bool, quiet: true}
"""
TEMPLATE = "# {{ inventory_hostname }}\nNodeName={{ inventory_hostname }}\nTuning=on\n"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def write_bed(tmp: Path, hosts: list[str]) -> tuple[Path, Path]:
    books = tmp / "playbooks"
    books.mkdir()
    (books / "bench.yml").write_text(PLAYBOOK)
    (books / "node.conf.j2").write_text(TEMPLATE)
    entries = {}
    for h in hosts:
        (tmp / "hosts" / h).mkdir(parents=True)
        entries[h] = {"bench_dir": str(tmp / "hosts" / h)}
    inv = tmp / "local.yml"
    inv.write_text(yaml.safe_dump({"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"},
                                        "hosts": entries}}))
    return books / "bench.yml", inv


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_playbook(playbook: Path, inventories: list[Path], env: dict[str, str], log: Path) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds (the controller and its modules), hosts with changes, hosts failed."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)]
    for inv in inventories:
        argv += ["-i", str(inv)]
    t0, c0 = time.perf_counter(), children_cpu()
    with log.open("w") as out:
        subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    recap = RECAP.findall(log.read_text())
    return wall, cpu, sum(1 for r in recap if int(r[2])), sum(1 for r in recap if int(r[3]) or int(r[4]))


def config_env(tmp: Path, which: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if which == "defaults":
        empty = tmp / "empty.cfg"
        empty.write_text("")
        env["ANSIBLE_CONFIG"] = str(empty)
    else:
        env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
        env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(tmp / "fact-cache")
    return env


def compare_configs(n: int) -> None:
    hosts = [f"h{i:04d}" for i in range(1, n + 1)]
    walls, cpus = {}, {}
    for which in ("defaults", "project"):
        with tempfile.TemporaryDirectory(prefix=f"gf-bench-{which}-") as d:
            tmp = Path(d)
            playbook, inv = write_bed(tmp, hosts)
            env = config_env(tmp, which)
            converge, _, changed, failed = run_playbook(playbook, [inv], env, tmp / "converge.log")
            wall, cpu, changed, failed = run_playbook(playbook, [inv], env, tmp / "nochange.log")
            if failed or changed:
                print((tmp / "nochange.log").read_text()[-3000:])
                raise SystemExit(f"{which}: the no-change run had {changed} changed and {failed} failed hosts")
            walls[which], cpus[which] = wall, cpu
            print(f"{which:>9}: converge {converge:7.1f} s   no-change {wall:7.1f} s wall, {cpu:7.1f} s CPU   "
                  f"({wall / n * 1000:.0f} ms/host, {n * 10} tasks), load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"    ratio defaults / project: wall {walls['defaults'] / walls['project']:.2f}x, "
          f"CPU {cpus['defaults'] / cpus['project']:.2f}x   (target >= 3x)")


def tool_overhead(n: int) -> None:
    from infra.orchestrate import Phase, UpOptions, up
    from infra.plan import build_plan
    from infra.site import load_site
    with tempfile.TemporaryDirectory(prefix="gf-bench-tool-") as d:
        tmp = Path(d)
        data = large_site(max(n, 5))
        data["site"]["name"] = "bench"
        (tmp / "site").mkdir()
        site_file = tmp / "site" / "site.yml"
        site_file.write_text(yaml.safe_dump(data))
        hosts = list(build_plan(load_site(str(site_file)), str(site_file)).hosts)[:n]
        playbook, inv = write_bed(tmp, hosts)
        playbook.rename(playbook.with_name("bench.yml"))
        os.environ["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(tmp / "fact-cache")
        for label in ("converge", "no-change"):
            out = io.StringIO()
            o = up(UpOptions(site=site_file, phases=(Phase("bench"),), playbook_dir=playbook.parent,
                             inventories=[inv], limit=",".join(hosts), batch=["100%"], max_fail=100,
                             run_dir=tmp / "runs" / label, out=out))
            if o.exit_code != 0:
                raise SystemExit(out.getvalue()[-3000:])
        ph = o.phases[0]
        outside_tasks = o.wall_seconds - ph.task_seconds
        before_first_event = o.wall_seconds - ph.ansible_seconds
        print(f"tool overhead, gigafactory up, {len(hosts)} hosts, no-change run: wall {o.wall_seconds:.1f} s, "
              f"inside tasks {ph.task_seconds:.1f} s, outside tasks {outside_tasks:.1f} s "
              f"({100 * outside_tasks / o.wall_seconds:.0f}%); of that, before Ansible's first event or after its "
              f"recap (validate, plan, render, ansible-playbook start and inventory, result files): "
              f"{before_first_event:.1f} s ({100 * before_first_event / o.wall_seconds:.0f}%)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=500)
    p.add_argument("--skip-tool", action="store_true", help="only compare the two configurations")
    p.add_argument("--skip-configs", action="store_true", help="only measure the tool's overhead")
    args = p.parse_args()
    print(f"controller overhead: {args.hosts} simulated hosts, {os.cpu_count()} cores")
    if not args.skip_configs:
        compare_configs(args.hosts)
    if not args.skip_tool:
        tool_overhead(args.hosts)


if __name__ == "__main__":
    main()
