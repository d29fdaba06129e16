"""An earlier version of a site file: at a git revision of the repository holding it, or as a run recorded it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .load import parse_site
from .model import Site

RECORDED_SITE_FILE = "site.yml"
"""The copy of the validated site file ``gigafactory up`` keeps in its run directory."""


class RevisionInvalid(ValueError):
    """The earlier version cannot be found or read; the message says why, in words an operator acts on."""


def site_text_at(site: Path, ref: str) -> tuple[str, str]:
    """(text, source) of ``site`` as it was at ``ref``: a run directory (its recorded copy), a site file's path, or a
    git revision of the repository holding ``site`` (a path that exists wins over a revision of the same name)."""
    candidate = Path(ref)
    if candidate.is_dir():
        recorded = candidate / RECORDED_SITE_FILE
        if not recorded.is_file():
            raise RevisionInvalid(f"{ref}: a directory without a recorded site file ({RECORDED_SITE_FILE}); "
                                  "give a run directory of gigafactory up, a site file or a git revision")
        return _read(recorded), str(recorded)
    if candidate.is_file():
        return _read(candidate), str(candidate)
    return _git_show(site, ref)


def site_at(site: Path, ref: str) -> tuple[Site, str]:
    """The validated site ``site`` was at ``ref`` (as ``site_text_at`` finds it), and where it came from (``REF:path``
    for a revision). Files it names are read beside ``site``. Raises RevisionInvalid or SiteInvalid."""
    text, source = site_text_at(site, ref)
    return parse_site(text, source, Path(site).parent), source


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RevisionInvalid(f"{path}: cannot read it ({err})") from None


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RevisionInvalid(f"cannot run git ({err})") from None


def _said(result: subprocess.CompletedProcess) -> str:
    line = result.stderr.decode("utf-8", "replace").strip().splitlines()
    return f" (git: {line[-1]})" if line else ""


def _git_show(site: Path, ref: str) -> tuple[str, str]:
    if not ref or ref.startswith("-") or any(c.isspace() or not c.isprintable() for c in ref):
        raise RevisionInvalid(f"{ref!r} is neither a file, a run directory nor a git revision")
    site = site.resolve()
    top = _git(["rev-parse", "--show-toplevel"], site.parent)
    if top.returncode != 0:
        raise RevisionInvalid(f"{ref!r} is neither a file nor a run directory, and {site} is not in a git "
                              f"repository to look the revision up in{_said(top)}")
    root = Path(top.stdout.decode().strip()).resolve()
    commit = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root)
    if commit.returncode != 0:
        raise RevisionInvalid(f"{ref!r}: no such revision in the git repository {root} (nor a file or run directory)")
    relative = site.relative_to(root).as_posix()
    shown = _git(["show", f"{commit.stdout.decode().strip()}:{relative}"], root)
    if shown.returncode != 0:
        raise RevisionInvalid(f"{ref!r}: {relative} does not exist at that revision of {root}{_said(shown)}")
    try:
        return shown.stdout.decode("utf-8"), f"{ref}:{relative}"
    except UnicodeDecodeError:
        raise RevisionInvalid(f"{ref}:{relative}: not UTF-8 text") from None
