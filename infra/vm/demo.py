"""``gigafactory demo``: the site's hosts as local QEMU VMs (infra.vm), provisioned by ``up``, then the acceptance report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from ..orchestrate.up import UpOptions, up
from ..plan import build_plan
from ..plan.phases import ACCEPTANCE
from ..project import REPO_ROOT
from ..runner.execution import execution_packages
from ..site import load_site
from .mirrors import image_build_mirrors


def state_dir(site_name: str) -> Path:
    """Where the demo's VMs keep pids, ports, keys and logs (gitignored)."""
    return REPO_ROOT / ".cache" / "demo" / site_name


# Seconds to connect to an emulated guest: ssh's ConnectTimeout, and with Mitogen its whole bootstrap (an emulated
# Python start receiving Mitogen's core), which Ansible's default of 10 s cuts short while three TCG guests boot.
CONNECT_TIMEOUT_S = 60


def connection_inventory(vms, from_image: frozenset[str] = frozenset()) -> dict:
    """An inventory source with how to reach each running VM; it is given after the site file and so wins.

    The VMs' login user is unprivileged (infra.vm); the phases become root through sudo, as on a real site
    whose provisioning user is not root. A VM booted from its node type's image (``from_image``) gets only the
    roles' configure part (``gigafactory_part``, docs/images.md): the image holds the install part, built from the
    same role files (the image's key hashes them, so a changed role is a new image).
    """
    hosts = {}
    for vm in vms:
        hosts[vm.name] = {
            "ansible_host": vm.ssh_host,
            "ansible_port": vm.ssh_port,
            "ansible_user": vm.user,
            "ansible_become": True,
            "ansible_ssh_private_key_file": str(vm.key_path),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={vm.known_hosts} -o StrictHostKeyChecking=yes",
            "ansible_ssh_timeout": CONNECT_TIMEOUT_S,
        }
        if vm.name in from_image:
            hosts[vm.name]["gigafactory_part"] = "configure"
    return {"all": {"hosts": hosts}}


def demo_boot(site_path: Path, from_scratch: bool = False) -> Path:
    """Boot the site's hosts (or find them running) and write their connection inventory; return its path.

    Each host boots from its node type's image (``gigafactory image build``, from the cache or built natively
    first; ``from_scratch``: the bare test bed image); running VMs are kept, as they booted. The test bed's mirrors
    start first: the Debian mirror, and the Python index when the site has execution hosts (what they install)."""
    from .launcher import Launcher
    from .mirror_cache import ensure_mirror_cache
    from .site import specs_for_site

    site = load_site(str(site_path))
    plan = build_plan(site, str(site_path))
    vm_dir = state_dir(site.site.name)
    ensure_mirror_cache()      # the demo site's own Debian mirror (repositories.debian), on this machine's loopback
    if "execution" in plan.groups:
        # its Python index (repositories.python: python_index.GUEST_URL): what the execution hosts install
        from .python_index import ensure_python_index
        ensure_python_index(execution_packages(site.provisioning.strategy))
    launcher = Launcher(vm_dir)
    booted = vm_dir / "booted.json"       # which hosts the running VMs booted from an image
    states = launcher.status()
    if states and all(s.alive for s in states):
        vms = launcher.running()          # a second `demo` provisions the running VMs again
        print(f"demo {site.site.name}: VMs already running ({', '.join(v.name for v in vms)}): provisioning them again")
        from_image = frozenset(json.loads(booted.read_text()) if booted.is_file() else ())
    else:
        images = {} if from_scratch else host_images(site, plan, site_path)
        vms = launcher.up(specs_for_site(site, plan), images)
        from_image = frozenset(images)
        booted.write_text(json.dumps(sorted(from_image)))
    conn = vm_dir / "connection.yml"
    conn.write_text(yaml.safe_dump(connection_inventory(vms, from_image)), encoding="utf-8")
    (vm_dir / "vms.json").write_text(json.dumps([dataclasses.asdict(v) for v in vms], default=str, indent=1))
    return conn


def demo_up(site_path: Path, options: UpOptions | None = None, from_scratch: bool = False) -> int:
    """Boot the site's hosts (``demo_boot``), run ``up``, then ``playbooks/acceptance.yml`` if present.

    ``up`` applies the configure part to hosts booted from their node type's image; ``from_scratch``: the bare test
    bed image and the full install."""
    conn = demo_boot(site_path, from_scratch)
    options = options or UpOptions(site=site_path)
    options.site = site_path
    options.inventories = [conn, *options.inventories]
    outcome = up(options)
    if outcome.exit_code != 0 or options.cancel.requested:
        return outcome.exit_code or options.cancel.exit_code
    return acceptance(options, outcome.run_dir)


def host_images(site, plan, site_path: Path) -> dict:
    """Each host's node image as the launcher boots it, built natively where the cache has none."""
    from ..image.build import site_images
    by_type = {b.node_type: b.vm_image()
               for b in site_images(site, plan, site_path.resolve(), **image_build_mirrors(site))}
    return {name: by_type[host.node_type] for name, host in plan.hosts.items()}


def acceptance(options: UpOptions, run_dir: Path) -> int:
    """Run the acceptance phase (if the playbook directory has its playbook) as a last phase of its own and print its report."""
    if not options.playbook(ACCEPTANCE).is_file():
        print(f"acceptance: no {ACCEPTANCE.playbook} yet; skipped")
        return 0
    report_path = Path(run_dir).resolve() / "acceptance.json"   # ansible-runner runs in its own directory
    outcome = up(dataclasses.replace(options, phases=(ACCEPTANCE,), only=None, retry=False, batch=["100%"],
                                     limit=None, run_dir=run_dir / "acceptance",
                                     extravars={**options.extravars, "gf_acceptance_report": str(report_path)}))
    if report_path.is_file():
        print_acceptance(json.loads(report_path.read_text()), report_path)
    return outcome.exit_code


def print_acceptance(report: dict, path: Path) -> None:
    """The acceptance report as a table: Slurm job, RDMA bandwidth, the health gate's verdict per node."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="acceptance", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    slurm, rdma = report.get("slurm"), report.get("rdma")
    table.add_row("Slurm 2-node job", f"ran on {', '.join(slurm['ran_on'])} (account {slurm['account']})"
                  if slurm else "not run")
    table.add_row("RDMA write bandwidth", rdma_result(rdma) if rdma else "not run")
    for host, passed in sorted(report.get("health", {}).items()):
        reason = (report.get("health_reasons") or {}).get(host) or ""
        table.add_row(f"health gate {host}", "passed" if passed else f"FAILED: {reason}")
    Console().print(table)
    print(f"acceptance report: {path}")


def rdma_result(rdma: dict) -> str:
    """The RDMA row: the pair's figure, the verdict with its floor and rule, and on emulated HCAs each node's loopback."""
    pair = " -> ".join(reversed(rdma["pair"]))
    if "detail" not in rdma:       # a report of before the verdict had a rule: a fixed floor
        return f"{pair}: {float(rdma['gbits']):.2f} Gb/s (floor {float(rdma['floor']):g})"
    verdict = rdma["detail"].removeprefix("ib_write_bw ").replace(" Gb/s, ", " Gb/s, passed: " if rdma["passed"] else " Gb/s, FAILED: ", 1)
    loopback = ", ".join(f"{host} {gbits:.2g}" for host, gbits in sorted(rdma.get("loopback", {}).items()))
    return f"{pair}: {verdict}" + (f" (loopback {loopback} Gb/s)" if loopback else "")


def demo_down(site_path: Path) -> None:
    """Stop the demo's VMs."""
    from .launcher import Launcher
    site = load_site(str(site_path))
    Launcher(state_dir(site.site.name)).down()
    print(f"demo {site.site.name}: VMs stopped")
