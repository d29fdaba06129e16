"""The project as an execution host receives it: one reproducible archive of what Ansible reads there, named by the
digest of its contents (its revision), built on the controller and unpacked by the execution_host role."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# An installed package carries the checkout's ansible.cfg and playbooks/ here (pyproject.toml; docs/install.md).
INSTALLED_ANSIBLE = Path(__file__).resolve().parent / "_ansible"
# What Ansible on an execution host reads: its configuration, the playbooks with their roles and plugins, the infra
# package the inventory plugin and filters import, and the site files kept in the repository.
PROJECT_PARTS = ("ansible.cfg", "infra", "playbooks", "inventories")
SKIPPED = ("__pycache__", ".pytest_cache")


def ansible_root() -> Path:
    """The directory holding ``ansible.cfg`` and ``playbooks/`` (roles, plugins): the copy inside an installed
    package (``infra/_ansible``), else the checkout's top. ansible.cfg's relative paths resolve against it."""
    return INSTALLED_ANSIBLE if (INSTALLED_ANSIBLE / "ansible.cfg").is_file() else REPO_ROOT


def installed_fact_cache(ansible_config: Path) -> Path | None:
    """Ansible's fact cache when ``ansible_config`` is an installed package's, whose ``.cache/`` beside it would be
    inside the package: beside the image cache (``$GIGAFACTORY_CACHE``, else ``~/.cache/gigafactory``); None for a
    checkout's, whose ansible.cfg keeps it in the checkout."""
    if not Path(ansible_config).is_relative_to(INSTALLED_ANSIBLE):
        return None
    return Path(os.environ.get("GIGAFACTORY_CACHE") or Path.home() / ".cache" / "gigafactory") / "ansible-facts"


@dataclass(frozen=True)
class ProjectArchive:
    path: Path
    revision: str

    def extravars(self) -> dict[str, str]:
        return {"path": str(self.path), "revision": self.revision}


def project_files(root: Path) -> list[Path]:
    """The files of PROJECT_PARTS under ``root``, sorted, without caches and compiled Python."""
    out: list[Path] = []
    for part in PROJECT_PARTS:
        top = root / part
        candidates = [top] if top.is_file() else sorted(top.rglob("*")) if top.is_dir() else []
        out += [p for p in candidates if p.is_file() and not p.is_symlink() and p.suffix != ".pyc"
                and not any(s in p.relative_to(root).parts for s in SKIPPED)]
    return sorted(out)


def project_archive(root: Path, dest: Path) -> ProjectArchive:
    """``dest/project-<revision>.tar.gz``: the project's files with fixed owners, modes and times, so that the same
    tree always gives the same archive and revision (the first 16 hex digits of the sha256 of names and contents)."""
    files = project_files(root)
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(root)}\0{f.stat().st_mode & 0o111 and 1}\0".encode())
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    revision = digest.hexdigest()[:16]
    path = dest / f"project-{revision}.tar.gz"
    if not path.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in files:
                info = tarfile.TarInfo(str(f.relative_to(root)))
                data = f.read_bytes()
                info.size, info.mtime, info.uname, info.gname = len(data), 0, "root", "root"
                info.mode = 0o755 if f.stat().st_mode & 0o111 else 0o644
                tar.addfile(info, io.BytesIO(data))
        partial = path.with_suffix(".partial")
        with open(partial, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            gz.write(buf.getvalue())
        partial.rename(path)
    return ProjectArchive(path, revision)
