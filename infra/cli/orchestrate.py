"""The ``up`` and ``demo`` subcommands of ``gigafactory`` (hooked in by ``infra.cli``)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..site.hostlists import compress
from ..runner.cancel import Cancellation
from ..plan.phases import PHASES
from ..orchestrate.up import OrchestrationError, UpOptions, up
from ..orchestrate.waves import BatchInvalid, parse_batch

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
    """The run under SIGINT/SIGTERM handlers of its own: the first signal stops it between tasks (exit 130 or 143,
    hosts.json and summary.json written), a second at once."""
    cancel = Cancellation()
    with cancel.handling():
        try:
            if getattr(args, "against", None) is not None:
                return _up_against(args, cancel)
            if getattr(args, "force_replace", False):
                print("error: --force-replace goes with --against REF (the change whose replace-class hosts it "
                      "applies)", file=sys.stderr)
                return EXIT_INVALID
            return up(dataclasses.replace(options_from(args), cancel=cancel)).exit_code
        except OrchestrationError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_INVALID
        except KeyboardInterrupt:
            print(f"{cancel.name}: stopped at once", file=sys.stderr)
            return cancel.exit_code


def _up_against(args: argparse.Namespace, cancel: Cancellation) -> int:
    """``up SITE --against REF``: the change's diff (the one ``gigafactory diff`` prints, computed the same way),
    then the run with each host's class as its impact: nothing -> untouched, new -> every phase, removed -> named
    only, replace -> refused unless ``--force-replace`` (then applied like a new host)."""
    from ..plan import build_plan
    from ..plan.diff import NOTHING, REMOVED, diff_against
    from ..render.diff import diff_as_text
    from ..site import parse_site
    from ..site.load import read_site_text
    from ..site.revision import RevisionInvalid
    if args.retry:
        print("error: --against and --retry: give one. --retry reruns what an earlier run left unfinished; after a "
              "rollout that stopped, run `up SITE --against REF` again with the same REF (the hosts that still "
              "need it roll again, idle ones first)", file=sys.stderr)
        return EXIT_INVALID
    site_path = Path(args.site).resolve()          # read once, as up() reads it: the diff shown is what is applied
    site_text = read_site_text(site_path)
    site = parse_site(site_text, str(site_path), site_path.parent)   # SiteInvalid: exit 2 naming the field
    plan = build_plan(site, str(site_path))
    try:
        diff, source = diff_against(site_path, args.against, site, plan)
    except RevisionInvalid as err:
        print(f"error: --against {err}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(diff_as_text(diff, source))
    sys.stdout.flush()
    impacts: dict[str, tuple[str, list[str]]] = {}
    for host, cls in diff.hosts.items():
        if cls == REMOVED:
            continue
        needs = [c for c in diff.changes if host in c.hosts or host in c.new_hosts]
        top = max((c.impact for c in needs), default=None)
        reasons = [c.field for c in needs if c.impact == top] or [cls]
        impacts[host] = ("none" if cls == NOTHING else cls, reasons)    # replace: up() refuses or forces it
    removed = diff.by_class().get(REMOVED, ())
    if removed:
        print(f"removed from the site, not touched: {compress(removed)} (take them out of service by hand)")
    options = options_from(args)                   # after the diff's print: a live table takes over the terminal
    return up(dataclasses.replace(options, cancel=cancel, impacts=impacts, force_replace=args.force_replace,
                                  site_text=site_text)).exit_code


def cmd_demo(args: argparse.Namespace) -> int:
    from ..image.build import ImageBuildFailed
    from ..image.cache import ImageInputError
    from ..runner.phase_files import PhaseInputError
    from ..vm.errors import TESTBED_ERRORS
    from ..vm.demo import demo_down, demo_up
    cancel = Cancellation()
    try:
        if args.down:
            demo_down(Path(args.site))
            return 0
        with cancel.handling():                     # as for up: the first signal stops between tasks, a second at once
            return demo_up(Path(args.site), dataclasses.replace(options_from(args), cancel=cancel),
                           from_scratch=args.from_scratch)
    except KeyboardInterrupt:
        print(f"{cancel.name}: stopped at once", file=sys.stderr)
        return cancel.exit_code
    except OrchestrationError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except (ImageInputError, PhaseInputError) as err:
        print(f"error: the demo's node images: {err}", file=sys.stderr)
        return EXIT_INVALID
    except ImageBuildFailed as err:
        print(f"error: the demo's node images: {err}", file=sys.stderr)
        return 1
    except TESTBED_ERRORS as err:
        print(f"error: the demo's VMs: {err}", file=sys.stderr)
        return 1


def cmd_power(args: argparse.Namespace) -> int:
    """``power SITE --cap P``: exit 0 every host set, 1 some failed (named), 2 bad input (nothing touched)."""
    import json
    import math

    from ..orchestrate.power import EVENTS_FILE, CapOptions, CapRefused, power_cap
    from ..site.problems import printable
    try:
        percent = float(args.cap.strip().removesuffix("%"))
        if not math.isfinite(percent):
            raise ValueError
    except ValueError:
        print(f"error: --cap: {printable(repr(args.cap)[:40])} is not a percentage from 1 to 100", file=sys.stderr)
        return EXIT_INVALID
    cancel = Cancellation()
    with cancel.handling():
        try:
            record, events = power_cap(CapOptions(Path(args.site), percent, args.domain, list(args.inventory),
                                                  cancel=cancel))
        except CapRefused as err:
            print(f"error: {err} (nothing was changed)", file=sys.stderr)
            return EXIT_INVALID
    if args.json:
        print(json.dumps(record, indent=1))
    else:
        limits = ", ".join(f"{t} {w} W" for t, w in record["limits_w"].items()) or "no GPU power limit"
        print(f"power domain {record['domain']} at {record['percent']:g} % of its budget: {limits} on "
              f"{record['hosts']} hosts, {len(record['failed'])} failed, {record['seconds']:g} s (event in "
              f"{events.parent / EVENTS_FILE})")
    for failure in record["failed"]:
        kind = "unreachable" if failure["unreachable"] else "failed"
        print(f"  {failure['host']}: {kind}: {printable(failure['message'][:300])}", file=sys.stderr)
    return 1 if record["failed"] else 0


def add_commands(sub) -> None:
    u = sub.add_parser("up", help="provision a site: run every phase through ansible-runner, in waves")
    u.add_argument("site", help="path to inventories/<site>/site.yml")
    add_up_arguments(u)
    u.add_argument("--against", metavar="REF",
                   help="apply only what changed since REF (a git revision, a run directory, a site file; as "
                        "gigafactory diff): each host by its impact class, drain and reboot ones rolled out")
    u.add_argument("--force-replace", action="store_true",
                   help="with --against: apply hosts of a replace-class change like new hosts instead of refusing")
    u.set_defaults(func=cmd_up)
    d = sub.add_parser("demo", help="boot the demo site's hosts as local VMs and provision them (--down: stop them)")
    d.add_argument("site", nargs="?", default="inventories/demo/site.yml")
    d.add_argument("--down", action="store_true", help="stop the demo VMs")
    d.add_argument("--from-scratch", action="store_true",
                   help="boot the bare test bed image and install everything over SSH, instead of each host's "
                        "node image (gigafactory image build) and the configure part only")
    add_up_arguments(d)
    d.set_defaults(func=cmd_demo)
    pw = sub.add_parser("power", help="steer running nodes: hold a power domain to a share of its budget by "
                                      "lowering its GPU power limits (--cap 100 restores the planned ones)")
    pw.add_argument("site", help="path to inventories/<site>/site.yml")
    pw.add_argument("--cap", required=True, metavar="PERCENT",
                    help="the share of the domain's budget its nodes may draw, 1 to 100 (100: the planned limits)")
    pw.add_argument("--domain", default="facility", metavar="NAME",
                    help="facility (the whole site, the default) or a name of site.power.domains")
    pw.add_argument("--inventory", "-i", action="append", type=Path, default=[], metavar="EXTRA",
                    help="extra inventory source after the site file (connection settings), as for up; repeatable")
    pw.add_argument("--json", action="store_true", help="print the event record as JSON")
    pw.set_defaults(func=cmd_power)
