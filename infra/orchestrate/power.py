"""Steering running nodes' GPU power limits: ``gigafactory power SITE --cap P [--domain NAME]`` (docs/power.md).

The limits are infra/site/power.py's (``cap_power``); one ansible-runner run of ``playbooks/power-cap.yml`` (not a
phase) over the domain's GPU hosts writes each host's cap file, or removes it at 100 %, and sets the limit now
(``nvidia-smi -pl`` acts at once: no job stops). Every run is one JSON line in ``runs/<site>/power-events.jsonl``,
beside ``up``'s run directories.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plan import site_and_plan
from ..plan.phases import PLAYBOOK_DIR
from ..project import ansible_root
from ..runner.ansible import run_wave
from ..runner.cancel import Cancellation
from ..site.index import SiteIndex
from ..site.power import FACILITY, CapRefused, site_power_cap
from .state import new_run_dir

POWER_CAP_PLAYBOOK = f"{PLAYBOOK_DIR}/power-cap.yml"       # relative to the Ansible root; not a phase
EVENTS_FILE = "power-events.jsonl"                          # in runs/<site>/, where up keeps its runs

__all__ = ["CapRefused", "CapOptions", "EVENTS_FILE", "POWER_CAP_PLAYBOOK", "power_cap"]


@dataclass
class CapOptions:
    site: Path
    percent: float
    domain: str = FACILITY
    inventories: list[Path] = field(default_factory=list)
    runs_root: Path = Path("runs")
    ansible_root: Path = field(default_factory=ansible_root)
    cancel: Cancellation = field(default_factory=Cancellation)


def power_cap(options: CapOptions) -> tuple[dict[str, Any], Path]:
    """Cap (or, at 100 %, restore) the domain's GPU limits; (the event record, the events file it was appended to).
    Raises SiteInvalid or CapRefused before anything is touched."""
    site, plan = site_and_plan(str(options.site))
    cap = site_power_cap(SiteIndex(site), options.domain, options.percent)
    hosts = [h for h in plan.hosts if h in cap.hosts]
    runs = options.runs_root / site.site.name
    at = int(time.time())
    started = time.monotonic()
    failed: list[dict[str, Any]] = []
    if hosts:
        root = options.ansible_root.resolve()
        result = run_wave(
            playbook=root / POWER_CAP_PLAYBOOK, inventories=[options.site.resolve(), *(i.resolve() for i in options.inventories)],
            hosts=hosts, private_data_dir=new_run_dir(runs / "power"), ident="power-cap",
            ansible_config=root / "ansible.cfg", check=False, sink=lambda event: None,
            extravars={"gf_power_cap": {"percent": _number(cap.percent), "domain": cap.domain, "at": at,
                                        "limits_w": cap.limits_w}},
            strategy=site.provisioning.strategy, cancel=options.cancel)
        failed = [{"host": h, "message": f.message, "unreachable": f.unreachable}
                  for h in hosts if (f := result.failed.get(h)) is not None]
    record = {"at": at, "domain": cap.domain, "percent": _number(cap.percent), "limits_w": cap.limits_w,
              "hosts": len(hosts), "failed": failed, "seconds": round(time.monotonic() - started, 3)}
    runs.mkdir(parents=True, exist_ok=True)
    events = runs / EVENTS_FILE
    with open(events, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=False) + "\n")
    return record, events


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
