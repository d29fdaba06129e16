"""What a phase reads: its playbooks, the task files they import and every role they apply, found by reading them,
and a digest of those files. Plain file reading, no Pulumi and no Ansible: an image build's cache hit hashes only
these (infra/image/build.py), and NodeConfiguration (node_configuration.py) the same."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ROLES_DIR = "playbooks/roles"           # roles_path in ansible.cfg
# libyaml's safe loader where PyYAML has it: the same documents, parsed ten times faster (a cache hit reads ~75 files)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PhaseInputError(ValueError):
    """A file a phase reads is missing or cannot be read, so its inputs cannot be hashed."""


ROLE_KEYS = {f"{prefix}{verb}_role" for prefix in ("", "ansible.builtin.", "ansible.legacy.") for verb in ("include", "import")}
TASKS_KEYS = {f"{prefix}{verb}_tasks" for prefix in ("", "ansible.builtin.", "ansible.legacy.") for verb in ("include", "import")}
PLAYBOOK_KEYS = {"import_playbook", "ansible.builtin.import_playbook", "ansible.legacy.import_playbook"}
TASK_LISTS = ("pre_tasks", "roles", "tasks", "post_tasks", "handlers", "block", "rescue", "always")
NOT_READ = {"molecule", "__pycache__", "README.md"}     # in a role's folder, never read by a run


def _yaml(root: Path, rel: str, why: str) -> Any:
    path = root / rel
    if not path.is_file():
        raise PhaseInputError(f"{why}: {rel} is missing")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 - a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise PhaseInputError(f"{why}: {rel} cannot be read: {err}") from None


def _literal(value: Any, where: str) -> str:
    """A role or file name as written; a templated one cannot be followed before the run."""
    if isinstance(value, str) and "=" in value and not value.startswith("{{"):   # k=v form: name=base
        value = dict(part.split("=", 1) for part in value.split() if "=" in part).get("name", value)
    if not isinstance(value, str) or not value or "{{" in value or "{%" in value:
        raise PhaseInputError(f"{where}: {value!r} is not a literal name, so the phase's inputs cannot be known")
    return value


def _references(items: Any, where: str, files: bool = True) -> tuple[list[str], list[str], list[str]]:
    """(roles, task files, playbooks) a list of plays, tasks or role entries names, blocks included.

    ``files=False`` (in a role, whose whole folder is hashed): roles only; task files may be templated.
    """
    roles: list[str] = []
    tasks: list[str] = []
    playbooks: list[str] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):                       # a role entry of a play's roles:
            roles.append(_literal(item, where))
            continue
        if not isinstance(item, dict):
            continue
        for key, value in item.items():
            if key in ROLE_KEYS:
                roles.append(_literal(value.get("name") if isinstance(value, dict) else value, f"{where} ({key})"))
            elif key in TASKS_KEYS and files:
                tasks.append(_literal(value.get("file") if isinstance(value, dict) else value, f"{where} ({key})"))
            elif key in PLAYBOOK_KEYS:
                playbooks.append(_literal(value, f"{where} ({key})"))
            elif key in TASK_LISTS:
                r, t, p = _references(value, where, files)
                roles += r
                tasks += t
                playbooks += p
        if "role" in item and not any(k in item for k in ROLE_KEYS):   # {role: x, vars: ...} in roles:
            roles.append(_literal(item["role"], where))
    return roles, tasks, playbooks


def _role_references(root: Path, role: str) -> list[str]:
    """The roles a role brings in: meta/main.yml dependencies and include_role/import_role in its task files."""
    folder = root / ROLES_DIR / role
    out: list[str] = []
    meta = folder / "meta" / "main.yml"
    if meta.is_file():
        data = _yaml(root, meta.relative_to(root).as_posix(), f"role {role!r}") or {}
        for dep in data.get("dependencies") or ():
            out.append(_literal(dep.get("role", dep.get("name")) if isinstance(dep, dict) else dep, f"{ROLES_DIR}/{role}/meta/main.yml"))
    for sub in ("tasks", "handlers"):
        for file in sorted((folder / sub).rglob("*.y*ml")) if (folder / sub).is_dir() else ():
            rel = file.relative_to(root).as_posix()
            out += _references(_yaml(root, rel, f"role {role!r}"), rel, files=False)[0]
    return out


def phase_files(root: Path, playbook: str) -> tuple[str, ...]:
    """Every repository path a phase's playbook reads: itself, the playbooks and task files it imports, and the
    folder of each role it applies, with the roles those depend on or include, recursively. A missing one is an error."""
    files: dict[str, None] = {}
    roles: dict[str, None] = {}
    pending_roles: list[tuple[str, str]] = []
    pending = [(playbook, f"phase playbook {playbook}")]
    while pending:
        rel, why = pending.pop(0)
        if rel in files:
            continue
        files[rel] = None
        r, t, p = _references(_yaml(root, rel, why), rel)
        here = Path(rel).parent
        pending += [((here / name).as_posix(), f"imported by {rel}") for name in p + t]
        pending_roles += [(name, rel) for name in r]
    while pending_roles:
        role, by = pending_roles.pop(0)
        if role in roles:
            continue
        if not (root / ROLES_DIR / role).is_dir():
            raise PhaseInputError(f"{by}: role {role!r} is missing ({ROLES_DIR}/{role})")
        roles[role] = None
        pending_roles += [(name, f"role {role!r}") for name in _role_references(root, role)]
    return tuple(files) + tuple(f"{ROLES_DIR}/{role}" for role in roles)


def site_inventory_files(root: Path, site_file: str) -> tuple[str, ...]:
    """The group_vars/ and host_vars/ folders beside the site file, which Ansible reads with it (when present)."""
    here = Path(site_file).parent
    return tuple((here / name).as_posix() for name in ("group_vars", "host_vars") if (root / here / name).is_dir())


def _read_files(root: Path, rel: str) -> list[Path]:
    """The files at (or under) ``rel`` a run reads, in a fixed order; a missing path is an error."""
    path = root / rel
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not NOT_READ.intersection(p.relative_to(path).parts))
    if path.is_file():
        return [path]
    raise PhaseInputError(f"{rel} is missing")


def files_digest(root: Path, paths: Iterable[str]) -> str:
    """Digest of the files at (or under) ``paths``; a missing path is an error, what a run never reads is left out."""
    digest = hashlib.sha256()
    for rel in paths:
        path = root / rel
        files = _read_files(root, rel)
        digest.update(f"{rel}:{len(files)}\0".encode())
        for file in files:
            # named as under ``rel`` (a site's group_vars/ may be outside the repository)
            name = rel if file == path else (Path(rel) / file.relative_to(path)).as_posix()
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


_REFERENCE = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# Where a play or a role names an inventory group: a play's hosts pattern, groups['x'] (or groups.x), 'x' in group_names.
_HOSTS = re.compile(rb"^[ \t-]*hosts:[ \t]*['\"]?([^'\"#\n]+)", re.MULTILINE)
_GROUP = re.compile(rb"\bgroups(?:\[\s*['\"]([\w-]+)['\"]\s*\]|\.([A-Za-z_]\w*))|['\"]([\w-]+)['\"]\s+in\s+group_names\b")
_PATTERN_WORD = re.compile(r"[\w-]+")


def files_references(root: Path, paths: Iterable[str]) -> frozenset[str]:
    """Every name written in the files at (or under) ``paths``, with the attributes read of it (``gf_software.cuda``,
    ``gf_site``): the inventory variables a phase can read are among them (a variable no file names is one the phase
    never reads; of a variable only ever written with attributes, only those are read)."""
    return frozenset(m.decode() for rel in paths for file in _read_files(root, rel)
                     for m in _REFERENCE.findall(file.read_bytes()))


def files_groups(root: Path, paths: Iterable[str]) -> frozenset[str]:
    """The inventory groups the files at (or under) ``paths`` address: in a play's ``hosts``, as ``groups['x']``, or
    as ``'x' in group_names``; ``group_names`` itself when they read it otherwise (a host's every group)."""
    out: set[str] = set()
    for rel in paths:
        for file in _read_files(root, rel):
            text = file.read_bytes()
            for pattern in _HOSTS.findall(text):
                out.update(_PATTERN_WORD.findall(re.sub(r"\[[^]]*\]", "", pattern.decode())))   # hosts[0]: a group
            tested = 0
            for match in _GROUP.finditer(text):
                out.add(next(g for g in match.groups() if g).decode())
                tested += match.group(3) is not None
            if text.count(b"group_names") > tested:
                out.add("group_names")
    return frozenset(out)
