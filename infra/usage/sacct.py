"""Slurm's accounting records as ``sacct`` prints them, parsed strictly: a bad line names its field.

The file is the output of (one line per job allocation, times as epoch seconds):

    SLURM_TIME_FORMAT=%s sacct --allusers --allocations --parsable2 \\
        --starttime <period start> --endtime <period end> \\
        --format=JobIDRaw,Account,Partition,Start,End,AllocTRES,ConsumedEnergyRaw,AdminComment

The header line is required (fields are found by name, in any order, extra fields ignored; AdminComment may be
left out). Times may also be ISO 8601 as sacct prints them by default; those are read in the billing time zone.
Without a file, ``gigafactory usage`` runs ``sacct_argv`` on the accounting host (infra/usage/accounting.py) and
prepends ``SACCT_HEADER``.

AdminComment carries a job's GPU energy where the site measures it with DCGM job statistics: the slurm_compute
role's epilog writes one word per node, ``dcgm-energy:<node>:gpus=<n>:joules=<j>`` (docs/metering.md). A comment is
free text an administrator may have written too, so it is the last field: a ``|`` in it stays in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

SACCT_FIELDS = ("JobIDRaw", "Account", "Partition", "Start", "End", "AllocTRES", "ConsumedEnergyRaw")
COMMENT_FIELD = "AdminComment"                  # optional, last: the DCGM GPU energy words
SACCT_FORMAT = (*SACCT_FIELDS, COMMENT_FIELD)
SACCT_COMMAND = ("SLURM_TIME_FORMAT=%s sacct --allusers --allocations --parsable2 --starttime START --endtime END "
                 f"--format={','.join(SACCT_FORMAT)}")
SACCT_HEADER = "|".join(SACCT_FORMAT)
DCGM_WORD = "dcgm-energy:"
_DCGM = re.compile(r"dcgm-energy:([A-Za-z0-9._-]+):gpus=([0-9]{1,4}):joules=([0-9]{1,15})")
_MEM_UNITS = {"K": 1 / 1024 ** 2, "M": 1 / 1024, "G": 1.0, "T": 1024.0, "P": 1024.0 ** 2}
_NOT_STARTED = ("Unknown", "None", "")
MAX_SHAPES = 100_000                # distinct AllocTRES strings remembered while reading
COUNT_MAX = 2**31 - 1              # CPUs, GPUs, nodes of one allocation: what Slurm's 32-bit counts hold
MEM_GB_MAX = 1e9                   # a job's memory in GB (1 EB): beyond any machine, and finite
NO_VALUE = 1 << 63                 # sacct prints NO_VAL64 (2^64 - 2) for an energy it did not read


class UsageInvalid(Exception):
    """Bad input to ``gigafactory usage``: ``field`` names where (option, file line and column)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class Job(NamedTuple):
    account: str
    partition: str
    start: float            # epoch seconds
    end: float | None       # None while the job runs
    cpus: int
    mem_gb: float
    gpus: int
    gpu_model: str | None   # Slurm's GRES type (e.g. 'h200'), None if the record names none
    nodes: int
    energy_j: int           # ConsumedEnergyRaw; 0 when not measured
    gpu_energy_j: int = 0   # its GPUs' energy from DCGM (AdminComment), 0 unless every GPU of the job has a reading
    gpu_split: tuple[tuple[str, int], ...] = ()     # GPUs per GRES type when the job holds several types


def sacct_argv(start: float, end: float) -> list[str]:
    """The argument vector printing, without header, the records ``read_sacct`` reads for jobs in [start, end]
    (every state; sacct's window is inclusive, the report splits by time): times on the command line in UTC and
    in the output as epoch seconds, so that the host's time zone does not matter."""
    def utc(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return ["env", "TZ=UTC", "SLURM_TIME_FORMAT=%s", "sacct", "--allusers", "--allocations", "--parsable2",
            "--noheader", "--starttime", utc(start), "--endtime", utc(end), f"--format={','.join(SACCT_FORMAT)}"]


EPOCH_MAX = 253402300799                            # 9999-12-31T23:59:59Z, the last second datetime holds


def shown(text: str | None, limit: int = 40) -> str:
    """``text`` quoted for a message: at most its first ``limit`` characters (a hostile cell may be megabytes)."""
    return repr(text if text is None or len(text) <= limit else text[:limit] + "...")


def _time(value: str, zone: ZoneInfo, where: str, fold: int | None = None) -> float | None:
    """Epoch seconds of ``value`` (epoch seconds or ISO 8601, read in ``zone`` without an offset). A local time the
    autumn change makes twice is ``fold``'s (0 the first, 1 the second); without a fold it is refused."""
    if value in _NOT_STARTED:
        return None
    if value.isdigit():
        if len(value) > 12 or int(value) > EPOCH_MAX:   # a 400-digit epoch is infinite as a float
            raise UsageInvalid(where, f"{shown(value, 20)} is not a time before the year 10000")
        return float(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageInvalid(where, f"{shown(value)} is not a time (epoch seconds or YYYY-MM-DDTHH:MM:SS)") from None
    if parsed.tzinfo:
        return parsed.timestamp()
    local = parsed.replace(tzinfo=zone)
    if not repeated_local(local):
        return local.timestamp()
    if fold is None:
        raise UsageInvalid(where, f"{shown(value)} is twice in {zone.key} (the clock goes back): write the hour with "
                                  "its UTC offset or in epoch seconds")
    return local.replace(fold=fold).timestamp()


def repeated_local(local: datetime) -> bool:
    """Whether the local time ``local`` (with its zone) is one the clock shows twice (the autumn change)."""
    first, second = local.replace(fold=0).utcoffset(), local.replace(fold=1).utcoffset()
    return first is not None and second is not None and first > second


def _tres(value: str, where: str) -> tuple[int, float, int, str | None, int, tuple[tuple[str, int], ...]]:
    """cpus, memory in GB, GPUs, GPU type, nodes and, for a job on nodes of several GPU types, GPUs per type, from an
    AllocTRES string such as ``billing=24,cpu=224,gres/gpu:h200=8,gres/gpu=8,mem=1945.60G,node=1``."""
    cpus = gpus = nodes = 0
    mem = 0.0
    model = None
    typed: dict[str, int] = {}
    try:
        for item in value.split(","):
            if not item:
                continue
            key, sep, amount = item.partition("=")
            if not sep:
                raise ValueError(item)
            if key == "cpu":
                cpus = int(amount)
            elif key == "mem":
                unit = amount[-1:]
                mem = float(amount[:-1]) * _MEM_UNITS[unit] if unit in _MEM_UNITS else float(amount) / 1024
            elif key == "gres/gpu":
                gpus = max(gpus, int(amount))
            elif key.startswith("gres/gpu:"):
                model = key[9:]
                typed[model] = int(amount)
            elif key == "node":
                nodes = int(amount)
    except (ValueError, KeyError):
        raise UsageInvalid(where, f"{value!r} is not a TRES list such as 'cpu=8,mem=64G,gres/gpu:h200=1,node=1'") from None
    if cpus < 0 or gpus < 0 or nodes < 0 or mem < 0 or any(n < 0 for n in typed.values()):
        raise UsageInvalid(where, f"{value!r} has a negative count")
    if max(cpus, gpus, nodes, *typed.values()) > COUNT_MAX or not mem <= MEM_GB_MAX:     # NaN fails the second
        raise UsageInvalid(where, f"{value[:80]!r} holds a count above {COUNT_MAX} or a memory that is not a finite "
                                  f"figure up to {MEM_GB_MAX:g} GB: no allocation is that large")
    gpus = max(gpus, sum(typed.values()))
    split = tuple(sorted((m, n) for m, n in typed.items() if n)) if len(typed) > 1 else ()
    return cpus, mem, gpus, model, nodes, split


def gpu_energy(comment: str, gpus: int, where: str) -> int:
    """Joules the job's GPUs used by DCGM's readings in its AdminComment (a word per node), or 0 when they do not
    cover every GPU the job had (a node's epilog failed, or the site records none): then the job is not metered by
    DCGM, never metered in part. Other words of the comment are not ours and are ignored; a malformed one of ours
    raises UsageInvalid."""
    if DCGM_WORD not in comment:
        return 0
    per_node: dict[str, tuple[int, int]] = {}
    for word in comment.split():
        if word.startswith(DCGM_WORD):
            match = _DCGM.fullmatch(word)
            if match is None:
                raise UsageInvalid(where, f"{word!r} is not a DCGM reading (dcgm-energy:<node>:gpus=<n>:joules=<j>)")
            per_node[match[1]] = (int(match[2]), int(match[3]))
    if not gpus or sum(n for n, _ in per_node.values()) != gpus:
        return 0
    return sum(j for _, j in per_node.values())


def read_sacct(lines: Iterable[str], timezone: str, source: str = "--sacct") -> Iterator[Job]:
    """The job allocations in sacct's parsable output; raises UsageInvalid naming the line and field of a bad one."""
    zone = ZoneInfo(timezone)
    it = iter(lines)
    header = next(it, "").rstrip("\n").split("|")
    missing = [f for f in SACCT_FIELDS if f not in header]
    if missing:
        raise UsageInvalid(f"{source} line 1", f"the header lacks {', '.join(missing)}; expected the output of: {SACCT_COMMAND}")
    i_id, i_acct, i_part, i_start, i_end, i_tres, i_energy = (header.index(f) for f in SACCT_FIELDS)
    width = len(header)
    i_comment = header.index(COMMENT_FIELD) if COMMENT_FIELD in header else None
    splits = width - 1 if i_comment == width - 1 else -1            # a '|' in the last field, the comment, is its own
    shapes: dict[str, tuple] = {}                       # AllocTRES repeats: parse each once
    for number, line in enumerate(it, start=2):
        fields = line.rstrip("\n").split("|", splits)
        if len(fields) != width:
            if not line.strip():
                continue
            raise UsageInvalid(f"{source} line {number}", f"{len(fields)} fields where the header has {width}")
        if "." in fields[i_id]:
            continue                                    # a job step: its allocation is counted on its job's line
        where = f"{source} line {number}"
        start = _time(fields[i_start], zone, f"{where}, Start")
        if not start:
            continue                                    # never started (Unknown, or 0 as epoch seconds): no usage
        end = _time(fields[i_end], zone, f"{where}, End")
        if end is not None and end < start:
            raise UsageInvalid(f"{where}, End", f"ends ({fields[i_end]}) before it starts ({fields[i_start]})")
        tres = fields[i_tres]
        parsed = shapes.get(tres)
        if parsed is None:
            parsed = _tres(tres, f"{where}, AllocTRES")
            if len(shapes) < MAX_SHAPES:
                shapes[tres] = parsed
        cpus, mem, gpus, model, nodes, split = parsed
        energy = fields[i_energy]
        if energy in ("", "0"):
            joules = 0
        elif energy.isdigit():
            joules = int(energy)
            if joules >= NO_VALUE:
                joules = 0                              # Slurm's NO_VAL64: the node had no reading
        else:
            raise UsageInvalid(f"{where}, ConsumedEnergyRaw", f"{energy!r} is not a whole number of joules")
        account = fields[i_acct]
        if not account:
            raise UsageInvalid(f"{where}, Account", "empty: every job runs under a tenant's account")
        gpu_joules = gpu_energy(fields[i_comment], gpus, f"{where}, {COMMENT_FIELD}") if i_comment is not None else 0
        job = Job(account, fields[i_part], start, end, cpus, mem, gpus, model, nodes, joules, gpu_joules, split)
        if split:
            yield from _parts(job)
        else:
            yield job


def _parts(job: Job) -> Iterator[Job]:
    """A job on nodes of several GPU types as one part per type, its CPUs, memory, nodes and energy in proportion to
    its GPUs of that type; each part keeps ``gpu_split``, and the report counts the job once (its first part)."""
    for model, n in job.gpu_split:
        f = n / job.gpus
        yield job._replace(gpus=n, gpu_model=model, cpus=job.cpus * f, mem_gb=job.mem_gb * f,
                           nodes=max(1, round(job.nodes * f)), energy_j=job.energy_j * f,
                           gpu_energy_j=job.gpu_energy_j * f)
