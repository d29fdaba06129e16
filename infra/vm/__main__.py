"""python -m infra.vm up|down|status --spec SPEC.json --state-dir DIR"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from infra.vm.image import ImageBuildError
from infra.vm.launcher import Launcher, LauncherError
from infra.vm.mirror import MirrorNotFound
from infra.vm.spec import SpecError, load_specs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.vm", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--spec", type=Path, help="JSON list of VMSpec dicts (for up)")
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="where the run keeps pids, ports, keys and logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    launcher = Launcher(args.state_dir)
    try:
        if args.command == "up":
            if args.spec is None:
                raise SpecError("--spec: required for 'up'")
            vms = launcher.up(load_specs(args.spec))
            print(json.dumps([asdict(vm) for vm in vms], indent=2, default=str))
        elif args.command == "down":
            launcher.down()
        else:
            print(json.dumps([asdict(s) for s in launcher.status()], indent=2))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (LauncherError, ImageBuildError, MirrorNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
