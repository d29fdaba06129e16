"""The ``gigafactory`` command line: argument parsing, calls down, errors as messages and exit codes (0 fine, 1 a run
failed, 2 invalid input). The site's commands, ``usage`` and ``health`` here; ``up``/``demo``, ``image`` in their modules."""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..plan import build_plan, site_and_plan
from ..render.escape import UnsafeValue
from ..site import Site, SiteInvalid, load_site, site_warnings
from ..site.problems import printable

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def cmd_validate(args: argparse.Namespace) -> int:
    site, plan = site_and_plan(args.site)
    c = plan.capacity
    print(f"{args.site}: valid: site {site.site.name}, {c.nodes} hosts, {c.gpus} GPUs, "
          f"{c.facility_kw:g} of {c.facility_budget_kw:g} kW")
    for warning in site_warnings(site):
        print(f"  warning: {warning}", file=sys.stderr)
    return EXIT_OK


class Stages:
    """Progress on stderr for a command that can take seconds (the plan of a 100,000-GPU site, a month of a million
    jobs): each stage's name when it starts and its seconds when it ends, on a terminal only (a pipe, a file or a
    test gets no noise)."""

    def __init__(self, command: str, stream=None):
        self.command, self.stream = command, stream or sys.stderr
        self.on = self.stream.isatty()

    @contextmanager
    def stage(self, text: str):
        start = time.perf_counter()
        if self.on:
            print(f"gigafactory {self.command}: {text}...", end="", file=self.stream, flush=True)
        try:
            yield
        finally:
            if self.on:
                print(f" {time.perf_counter() - start:.1f} s", file=self.stream, flush=True)


def cmd_plan(args: argparse.Namespace) -> int:
    from ..render import plan_as_dict
    if args.html:
        stages = Stages("plan")
        with stages.stage("validating and planning the site"):
            site, plan = site_and_plan(args.site)
        with stages.stage("drawing the page"):
            return _write_page(args, site, plan)
    site, plan = site_and_plan(args.site)
    if args.json:
        json.dump(plan_as_dict(plan), sys.stdout, indent=1)
        print()
        return EXIT_OK
    from ..render.summary import print_summary
    print_summary(site, plan)
    return EXIT_OK


def _write_page(args: argparse.Namespace, site: Site, plan) -> int:
    from ..render.page_plan import plan_page
    return _write_html("plan", args.html, plan_page(site, plan))


def _write_html(command: str, path: str, page: str) -> int:
    """A page rendered whole before FILE is opened: a FILE that cannot be written is exit 2, naming --html."""
    data = page.encode()
    try:
        Path(path).write_bytes(data)
    except OSError as err:
        print(f"gigafactory {command}: --html {path!r}: cannot write it: {err.strerror or err}", file=sys.stderr)
        return EXIT_INVALID
    print(f"{path}: {len(data) / 1024:,.0f} KiB")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    """Every file rendered before the first is written; a directory that cannot take them is exit 2, naming it, and
    an unexpected failure exit 1 with a sentence: never a traceback."""
    from ..render.files import render_all, write_all
    out = Path(args.out)
    try:
        site, plan = site_and_plan(args.site)
        files = render_all(site, plan)
    except (SiteInvalid, UnsafeValue):
        raise
    except Exception as err:  # noqa: BLE001 - a bug, said in a sentence
        print(f"gigafactory render: {args.site}: {type(err).__name__}: {err} (a bug in gigafactory; please report it "
              "with the site file)", file=sys.stderr)
        return EXIT_FAILED
    try:
        written = write_all(files, out)
    except OSError as err:
        print(f"gigafactory render: --out {str(out)!r}: cannot write {str(err.filename or out)!r}: "
              f"{err.strerror or err}", file=sys.stderr)
        return EXIT_INVALID
    for path in written:
        print(path)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from ..plan.diff import diff_against
    from ..render.diff import diff_as_json, diff_as_text
    from ..site.revision import RevisionInvalid
    site, plan = site_and_plan(args.site)
    try:
        diff, source = diff_against(Path(args.site), args.against, site, plan)
    except RevisionInvalid as err:
        print(f"gigafactory diff: --against {err}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write((diff_as_json if args.json else diff_as_text)(diff, source))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    schema = Site.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gigafactory site file"
    json.dump(schema, sys.stdout, indent=1)
    print()
    return EXIT_OK


def cmd_usage(args: argparse.Namespace) -> int:
    from ..usage import UsageInvalid, parse_period
    from ..usage.accounting import AccountingUnavailable
    from ..usage.render import as_csv, as_json, as_table, eed_table
    from ..usage.report import eed_inputs
    from ..usage.supply import hourly_renewable_share
    site = load_site(args.site)
    timezone = (site.billing.timezone if site.billing else None) or site.site.timezone
    try:
        if (args.period is None) == (args.eed is None):
            raise UsageInvalid("--period", "give either --period YYYY-MM (or YYYY) or --eed YYYY")
        if args.eed is not None and args.html is not None:
            raise UsageInvalid("--html", "a page of a --period; --eed prints its inputs as a table or JSON")
        if args.eed is not None and "-" in args.eed:
            raise UsageInvalid("--eed", f"{args.eed!r} is not a year: write e.g. 2026")
        option = "--period" if args.period is not None else "--eed"      # '' is given, and no period
        period = parse_period(args.period if args.period is not None else args.eed, timezone, option)
        now = time.time()                   # a period not over yet counts up to now
        share = None
        if site.energy and site.energy.supply:
            with _open_input(site.energy.supply, "energy.supply") as supply:
                try:
                    share = hourly_renewable_share(supply, period)
                except UnicodeDecodeError:
                    raise UsageInvalid("energy.supply", "not UTF-8 text") from None
        with Stages("usage").stage(f"metering {period.name}"):
            report = _usage_report(args, site, period, share, now)
    except UsageInvalid as err:
        print(f"gigafactory usage: {err}", file=sys.stderr)
        return EXIT_INVALID
    except AccountingUnavailable as err:      # the contract: an unreachable accounting host is exit 2, as a
        print(f"gigafactory usage: accounting host {err}", file=sys.stderr)   # Prometheus that does not answer
        return EXIT_INVALID
    if args.eed is not None:
        inputs = eed_inputs(report, site)
        sys.stdout.write(json.dumps(inputs, indent=1) + "\n" if args.format == "json" else eed_table(inputs))
        return EXIT_OK
    if args.html is not None:
        from ..usage.page import usage_page
        return _write_html("usage", args.html, usage_page(report))
    sys.stdout.write({"table": as_table, "json": as_json, "csv": as_csv}[args.format](report))
    return EXIT_OK


def _usage_report(args: argparse.Namespace, site: Site, period, share, now: float):
    """The period's report from the clusters' Prometheus and the jobs (--sacct FILE, else the accounting host)."""
    from ..usage import UsageInvalid, read_sacct, usage_report
    timezone = (site.billing.timezone if site.billing else None) or site.site.timezone
    kubernetes = _kubernetes_usage(args, site, period)
    if args.sacct is None and site.slurm is None and kubernetes:
        report = usage_report(site, period, [], share, args.tenant, kubernetes, now)
    elif args.sacct is None:
        lines, source = _cluster_sacct(args, site, period)
        report = usage_report(site, period, read_sacct(lines, timezone, source), share, args.tenant, kubernetes,
                              now)
    else:
        with _open_input(args.sacct, "--sacct") as lines:
            try:
                report = usage_report(site, period, read_sacct(lines, timezone), share, args.tenant, kubernetes,
                                      now)
            except UnicodeDecodeError as err:
                raise UsageInvalid("--sacct", f"not UTF-8 text (byte {err.start} of a block)") from None
    return report


def _kubernetes_usage(args: argparse.Namespace, site: Site, period) -> list:
    """Each metered cluster's usage of ``period`` from its Prometheus (raises PrometheusFailed, a UsageInvalid)."""
    from ..usage.prometheus import Prometheus, kubernetes_usage, prometheus_urls
    return [kubernetes_usage(Prometheus(cluster, url), period)
            for cluster, url in prometheus_urls(site, args.prometheus).items()]


def _cluster_sacct(args: argparse.Namespace, site: Site, period):
    """sacct's lines of ``period`` from the site's accounting host (as ``up`` reaches hosts) and their source name."""
    import tempfile

    from ..usage import UsageInvalid
    from ..usage.accounting import cluster_sacct
    plan = build_plan(site, args.site)
    if plan.slurm is None:
        raise UsageInvalid("slurm", "the site has no Slurm, so no accounting host to read: pass --sacct FILE")
    host = plan.slurm.accounting[0]
    inventories = [Path(args.site).resolve(), *(Path(i).resolve() for i in args.inventory)]
    with tempfile.TemporaryDirectory(prefix="gigafactory-usage-") as private:
        lines = cluster_sacct(node_control(host, inventories, Path(private)), host, period)
    return lines, f"sacct on {host}"


def cmd_health(args: argparse.Namespace) -> int:
    """The remediation service's view of the fleet (docs/healing.md), from --state DIR or the first Slurm controller."""
    from ..render.health import HealthInvalid, as_text, health_report, read_events, read_state
    site, plan = site_and_plan(args.site)
    try:
        if plan.remediation is None:
            raise HealthInvalid(args.site, "remediation", "the site runs no remediation service (no slurm section, "
                                                           "or remediation.enabled is false)")
        if args.state is not None:
            state_text, event_lines, source = _local_state(Path(args.state))
        elif plan.slurm is None:
            raise HealthInvalid(args.site, "state", "no Slurm controller to read the state from: a Kubernetes "
                                                    "cluster's service keeps it on its first control plane "
                                                    "(/var/lib/gigafactory-remediation); copy it and pass --state DIR")
        else:
            state_text, event_lines, source = _controller_state(args, plan)
        report = health_report(plan, read_state(state_text, f"{source}/state.json"),
                               read_events(event_lines, f"{source}/events.jsonl"), source)
    except HealthInvalid as err:
        print(f"gigafactory health: {err}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(json.dumps(report, indent=1) + "\n" if args.json else as_text(report))
    return EXIT_OK


def _local_state(folder: Path) -> tuple[str, list[str], str]:
    """state.json's text and events.jsonl's lines in ``folder`` (a copy of the service's state directory)."""
    from ..render.health import HealthInvalid
    texts = []
    for name in ("state.json", "events.jsonl"):
        try:
            texts.append((folder / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            if name == "state.json":
                raise HealthInvalid(str(folder / name), "(file)", "not found: has the remediation service run?") from None
            texts.append("")                                        # no event yet
        except (OSError, UnicodeDecodeError) as err:
            raise HealthInvalid(str(folder / name), "(file)", f"cannot read it: {getattr(err, 'strerror', None) or err}") from None
    return texts[0], texts[1].splitlines(), str(folder)


def _controller_state(args: argparse.Namespace, plan) -> tuple[str, list[str], str]:
    """The two files on the first Slurm controller, through ansible-runner's command module (argv, no shell): all of
    state.json, the last events of events.jsonl."""
    import tempfile

    from ..render.health import LAST_EVENTS, HealthInvalid
    host, folder = plan.slurm.controllers[0][0], plan.remediation.state_dir
    inventories = [Path(args.site).resolve(), *(Path(i).resolve() for i in args.inventory)]
    with tempfile.TemporaryDirectory(prefix="gigafactory-health-") as private:
        # as Slurm's own user (slurm.conf's SlurmUser): it owns StateSaveLocation, often NFS that squashes root
        control = node_control(host, inventories, Path(private), become_user=plan.slurm.user)
        state = _run_on(control, host, ["cat", "--", f"{folder}/state.json"])
        if state.rc != 0:
            reason = (state.stderr or state.stdout).strip().splitlines()[:1] or ["no message"]
            raise HealthInvalid(f"{host}:{folder}/state.json", "(file)", f"cannot read it (rc {state.rc}): {reason[0][:200]}")
        events = _run_on(control, host, ["tail", "-n", str(LAST_EVENTS), "--", f"{folder}/events.jsonl"])
    return state.stdout, events.stdout.splitlines() if events.rc == 0 else [], f"{host}:{folder}"   # rc 1: no event yet


def _run_on(control, host: str, argv: list[str]):
    from ..render.health import HealthInvalid
    try:
        return control.run(argv)
    except Exception as err:        # noqa: BLE001 -- ansible-runner's own failures: a reason, never a traceback
        raise HealthInvalid(f"{host}:{argv[-1]}", "(file)", f"ansible-runner failed: {type(err).__name__}: {err}") from None


def node_control(host: str, inventories: list[Path], private_data_dir: Path, become_user: str | None = None):
    """How ``usage`` reaches ``host``: ansible-runner's ad-hoc command module, as ``up``'s rollout does."""
    from ..project import ansible_root
    from ..orchestrate.rollout import AnsibleCommand
    return AnsibleCommand(host, inventories, private_data_dir, ansible_root() / "ansible.cfg", become_user=become_user)


def _open_input(path, field: str):
    from ..usage import UsageInvalid
    try:
        return open(path, encoding="utf-8", newline="")
    except OSError as err:
        raise UsageInvalid(field, f"cannot read {str(path)!r}: {err.strerror}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gigafactory", description="Infrastructure as code for AI factories.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    v = sub.add_parser("validate", help="check a site file; report every problem at once")
    v.add_argument("site", help="path to inventories/<site>/site.yml")
    v.set_defaults(func=cmd_validate)
    pl = sub.add_parser("plan", help="summarise the site's plan: hosts, racks, fabric, power")
    pl.add_argument("site")
    out = pl.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the whole plan as JSON")
    out.add_argument("--html", metavar="FILE", help="write the plan as one self-contained page (docs/pages.md)")
    pl.set_defaults(func=cmd_plan)
    r = sub.add_parser("render", help="write every generated configuration file")
    r.add_argument("site")
    r.add_argument("--out", required=True, help="directory to write into")
    r.set_defaults(func=cmd_render)
    d = sub.add_parser("diff", help="what a change to the site file does: each change's impact class and hosts; "
                                    "nothing is touched")
    d.add_argument("site")
    d.add_argument("--against", required=True, metavar="REF",
                   help="the earlier site file: a git revision (of the repository holding SITE), a run directory "
                        "of gigafactory up, or a site file's path")
    d.add_argument("--json", action="store_true", help="as JSON, for tools")
    d.set_defaults(func=cmd_diff)
    s = sub.add_parser("schema", help="JSON Schema of the site file, for editors")
    s.set_defaults(func=cmd_schema)
    u = sub.add_parser("usage", help="per-tenant GPU-hours, CPU-hours, storage, energy and cost of a period")
    u.add_argument("site")
    u.add_argument("--period", help="a month (2026-11) or a year (2026), in the billing time zone")
    u.add_argument("--eed", metavar="YEAR", help="print the EU Energy Efficiency Directive inputs of YEAR instead")
    u.add_argument("--tenant", help="only this tenant")
    u.add_argument("--format", choices=["table", "json", "csv"], default="table")
    u.add_argument("--html", metavar="FILE", help="write the period's usage as one self-contained page instead "
                                                  "(docs/pages.md)")
    u.add_argument("--sacct", metavar="FILE", help="sacct --parsable2 output (fields in docs/metering.md); default: "
                                                   "run sacct on the site's accounting host, as up reaches hosts")
    u.add_argument("--inventory", "-i", action="append", type=Path, default=[], metavar="EXTRA",
                   help="extra inventory source after the site file (connection settings), as for up; repeatable")
    u.add_argument("--prometheus", action="append", default=[], metavar="[CLUSTER=]URL",
                   help="read the Kubernetes cluster's namespace usage from this Prometheus (default: the site's "
                        "kubernetes[].prometheus); CLUSTER may be left out on a site with one cluster; repeatable")
    u.set_defaults(func=cmd_usage)
    h = sub.add_parser("health", help="the healing fleet: nodes by state, the breaker, the last events, the hardware "
                                      "repair list (docs/healing.md)")
    h.add_argument("site")
    h.add_argument("--json", action="store_true", help="as one JSON object, for tools")
    h.add_argument("--state", metavar="DIR", help="a local copy of the service's state directory (state.json, "
                                                  "events.jsonl); default: read them on the first Slurm controller")
    h.add_argument("--inventory", "-i", action="append", type=Path, default=[], metavar="EXTRA",
                   help="extra inventory source after the site file (connection settings), as for up; repeatable")
    h.set_defaults(func=cmd_health)
    _add_later_commands(sub)
    return p


class CommandsUnavailable(Exception):
    """A module that adds commands could not be imported: the installation is broken."""


def _add_later_commands(sub) -> None:
    """Commands of the orchestration (up, demo, ...), in their own modules so that validate, plan and render
    do not import them; a module that fails to import stops the command line rather than dropping commands."""
    try:
        from .orchestrate import add_commands
    except ImportError as err:
        raise CommandsUnavailable(f"the orchestration commands could not be loaded ({err}); "
                                  "reinstall gigafactory with its dependencies (scripts/setup)") from err
    add_commands(sub)
    from .image import add_commands as add_image_commands
    add_image_commands(sub)


def report_invalid(err: SiteInvalid) -> None:
    n = len(err.problems)
    print(printable(f"{err.source}: {n} problem{'s' if n != 1 else ''}:"), file=sys.stderr)
    for problem in err.problems:
        print(f"  {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except CommandsUnavailable as err:
        print(f"gigafactory: {err}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return args.func(args)
    except SiteInvalid as err:
        report_invalid(err)
        return EXIT_INVALID
    except UnsafeValue as err:
        # The model's types should have refused it; the templates refuse it all the same (render/escape.py).
        print(f"{getattr(args, 'site', 'site')}: a value cannot be written safely: {err}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK

