"""python -m infra.cli.vm up|down|status (--spec SPEC.json | --site SITE [--hosts H,...]) --state-dir DIR"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..plan import site_and_plan
from ..site import SiteInvalid
from ..vm.errors import TESTBED_ERRORS
from ..vm.launcher import Launcher
from ..vm.mirror_cache import ensure_mirror_cache
from ..vm.site import specs_for_site
from ..vm.spec import SpecError, load_specs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.cli.vm", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--spec", type=Path, help="JSON list of VMSpec dicts (for up)")
    parser.add_argument("--site", type=Path, help="a site file: boot its hosts as the plan describes them (for up)")
    parser.add_argument("--hosts", help="with --site: comma-separated hosts to boot (default: all)")
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="where the run keeps pids, ports, keys and logs")
    return parser


def _specs(args: argparse.Namespace) -> list:
    if args.site is not None:
        site, plan = site_and_plan(str(args.site))
        hosts = [h for h in args.hosts.split(",") if h] if args.hosts else None
        unknown = sorted(set(hosts or ()) - set(plan.hosts))
        if unknown:
            raise SpecError(f"--hosts: {', '.join(unknown)} not among the site's hosts")
        return specs_for_site(site, plan, hosts)
    if args.spec is None:
        raise SpecError("--spec or --site: one is required for 'up'")
    return load_specs(args.spec)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    launcher = Launcher(args.state_dir)
    try:
        if args.command == "up":
            specs = _specs(args)
            ensure_mirror_cache()     # the test sites' own Debian mirror, on this machine's loopback
            vms = launcher.up(specs)
            print(json.dumps([asdict(vm) for vm in vms], indent=2, default=str))
        elif args.command == "down":
            launcher.down()
        else:
            print(json.dumps([asdict(s) for s in launcher.status()], indent=2))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SiteInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TESTBED_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
