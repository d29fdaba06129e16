"""What a run leaves behind: per-host results (``hosts.json``), the run summary (``summary.json``), and how ``--retry`` reads them."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from ..site.revision import RECORDED_SITE_FILE

# Host states: ok (every phase it was in passed), failed, unreachable, pending (the run stopped before it finished).
OK, FAILED, UNREACHABLE, PENDING = "ok", "failed", "unreachable", "pending"


@dataclass
class HostResult:
    name: str
    status: str = PENDING
    phase: str | None = None           # the last phase the host ran (or failed in)
    phases_done: list[str] = field(default_factory=list)
    changed: int = 0
    failed_task: str | None = None
    message: str | None = None

    @property
    def needs_retry(self) -> bool:
        return self.status != OK


def utc_stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def new_run_dir(root: Path) -> Path:
    """A fresh ``root/<UTC timestamp>`` directory, 0700 (suffixed if one already exists this second)."""
    base = root / utc_stamp()
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True, mode=0o700)
            return path
        except FileExistsError:
            path = base.with_name(f"{base.name}-{n}")
            n += 1


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def record_site_file(run_dir: Path, text: str) -> Path:
    """The run's copy of the validated site file, 0600 (``gigafactory diff --against RUN_DIR`` reads it)."""
    path = run_dir / RECORDED_SITE_FILE
    path.unlink(missing_ok=True)                    # a --run-dir used before: never write through an old file's mode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def write_hosts(run_dir: Path, hosts: dict[str, HostResult]) -> None:
    write_json(run_dir / "hosts.json", {name: asdict(r) for name, r in hosts.items()})


def read_hosts(run_dir: Path) -> dict[str, HostResult]:
    data = json.loads((run_dir / "hosts.json").read_text(encoding="utf-8"))
    return {name: HostResult(**r) for name, r in data.items()}


def previous_run(runs: Path, check: bool, exclude: Path | None = None) -> Path | None:
    """The most recently started run directory under ``runs`` with the same check mode and a ``hosts.json``."""
    best: tuple[str, Path] | None = None
    if not runs.is_dir():
        return None
    for d in runs.iterdir():
        if d == exclude or not (d / "hosts.json").is_file() or not (d / "summary.json").is_file():
            continue
        try:
            summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if bool(summary.get("check")) != check:
            continue
        key = summary.get("started", "")
        if best is None or key > best[0]:
            best = (key, d)
    return best[1] if best else None


def retry_starts(previous: dict[str, HostResult], phase_names: list[str]) -> dict[str, int]:
    """Host -> index of the phase to start from: the phase it failed in, or the one after its last done phase."""
    starts: dict[str, int] = {}
    for name, r in previous.items():
        if not r.needs_retry:
            continue
        if r.status in (FAILED, UNREACHABLE) and r.phase in phase_names:
            starts[name] = phase_names.index(r.phase)
        else:
            done = [phase_names.index(p) for p in r.phases_done if p in phase_names]
            starts[name] = max(done) + 1 if done else 0
    return starts
