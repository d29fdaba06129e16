"""The ``up`` and ``demo`` subcommands of ``gigafactory`` (hooked in by ``infra.cli``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .phases import PHASES
from .up import OrchestrationError, UpOptions, up
from .waves import BatchInvalid, parse_batch

EXIT_INVALID = 2


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 100")
    return value


def _batch(text: str) -> list[str]:
    try:
        return parse_batch(text)
    except BatchInvalid as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_up_arguments(p: argparse.ArgumentParser) -> None:
    names = ", ".join(ph.name for ph in PHASES)
    p.add_argument("--phase", action="append", metavar="PHASE",
                   help=f"run only this phase (repeatable or comma-separated; phases: {names})")
    p.add_argument("--limit", metavar="HOSTS", help="hosts, groups or hostlist expressions, comma-separated")
    p.add_argument("--check", action="store_true", help="Ansible check mode with diffs: change nothing")
    p.add_argument("--max-fail", type=_percent, metavar="PCT",
                   help="stop when more than PCT%% of a wave's or phase's hosts failed "
                        "(default: the site's provisioning.max_fail_percent)")
    p.add_argument("--batch", type=_batch, metavar="SIZES",
                   help="wave sizes, e.g. 1,25%%,100%% (default: the site's provisioning.batch)")
    p.add_argument("--retry", action="store_true",
                   help="run again only the hosts that did not finish last time, each from the phase where it failed")
    p.add_argument("--run-dir", type=Path, metavar="DIR", help="where to keep this run (default runs/<site>/<UTC time>)")
    p.add_argument("--inventory", "-i", action="append", type=Path, default=[], metavar="EXTRA",
                   help="extra inventory source after the site file (e.g. connection settings); repeatable")


def options_from(args: argparse.Namespace) -> UpOptions:
    only = [n.strip() for item in (args.phase or []) for n in item.split(",") if n.strip()] or None
    return UpOptions(site=Path(args.site), only=only, limit=args.limit, check=args.check, max_fail=args.max_fail,
                     batch=args.batch, retry=args.retry, run_dir=args.run_dir, inventories=list(args.inventory))


def cmd_up(args: argparse.Namespace) -> int:
    try:
        return up(options_from(args)).exit_code
    except OrchestrationError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID


def cmd_demo(args: argparse.Namespace) -> int:
    from ..vm.errors import TESTBED_ERRORS
    from .demo import demo_down, demo_up
    try:
        if args.down:
            demo_down(Path(args.site))
            return 0
        return demo_up(Path(args.site), options_from(args))
    except OrchestrationError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except TESTBED_ERRORS as err:
        print(f"error: the demo's VMs: {err}", file=sys.stderr)
        return 1


def add_commands(sub) -> None:
    u = sub.add_parser("up", help="provision a site: run every phase through ansible-runner, in waves")
    u.add_argument("site", help="path to inventories/<site>/site.yml")
    add_up_arguments(u)
    u.set_defaults(func=cmd_up)
    d = sub.add_parser("demo", help="boot the demo site's hosts as local VMs and provision them (--down: stop them)")
    d.add_argument("site", nargs="?", default="inventories/demo/site.yml")
    d.add_argument("--down", action="store_true", help="stop the demo VMs")
    add_up_arguments(d)
    d.set_defaults(func=cmd_demo)
