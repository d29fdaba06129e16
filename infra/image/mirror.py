"""Find the Debian archive mirror the host's apt already uses (one-line and deb822 sources)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# Suite names Debian's main archive serves; security, ports and vendor archives use others.
DEBIAN_CODENAMES = frozenset(
    "buzz rex bo hamm slink potato woody sarge etch lenny squeeze wheezy jessie stretch "
    "buster bullseye bookworm trixie forky duke sid stable testing unstable oldstable "
    "oldoldstable".split()
)
ENV_OVERRIDE = "GIGAFACTORY_DEBIAN_MIRROR"


class MirrorNotFound(RuntimeError):
    """The host's apt sources name no Debian main archive."""


@dataclass(frozen=True)
class AptSource:
    """One (type, uri, suite, components) entry of an apt sources file."""

    type: str
    uri: str
    suite: str
    components: tuple[str, ...]
    enabled: bool = True


def _one_line_sources(text: str) -> list[AptSource]:
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # drop [arch=... signed-by=...]
        fields = line.split()
        if len(fields) < 3 or fields[0] not in ("deb", "deb-src"):
            continue
        sources.append(AptSource(fields[0], fields[1], fields[2], tuple(fields[3:])))
    return sources


def _deb822_sources(text: str) -> list[AptSource]:
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if not {"types", "uris", "suites"} <= fields.keys():
            continue
        enabled = fields.get("enabled", "yes").lower() not in ("no", "false", "0")
        components = tuple(fields.get("components", "").split())
        for type_ in fields["types"].split():
            for uri in fields["uris"].split():
                for suite in fields["suites"].split():
                    sources.append(AptSource(type_, uri, suite, components, enabled))
    return sources


def apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """All entries of sources.list and sources.list.d/*.list|*.sources, in apt's order."""
    sources: list[AptSource] = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        sources += _one_line_sources(main_list.read_text())
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += _one_line_sources(path.read_text())
            elif path.suffix == ".sources":
                sources += _deb822_sources(path.read_text())
    return sources


def serves_debian_main_archive(source: AptSource) -> bool:
    """True for a binary entry of Debian's main archive (a codename suite, component main)."""
    path = source.uri.rstrip("/").rsplit("/", 1)[-1]
    return (
        source.enabled
        and source.type == "deb"
        and source.suite in DEBIAN_CODENAMES
        and "main" in source.components
        and "security" not in path
    )


def host_debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The URI of the host's Debian main archive; $GIGAFACTORY_DEBIAN_MIRROR overrides it."""
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return override.rstrip("/")
    for source in apt_sources(apt_dir):
        if serves_debian_main_archive(source):
            return source.uri.rstrip("/")
    raise MirrorNotFound(
        f"no Debian main archive among the apt sources under {apt_dir}; "
        f"set {ENV_OVERRIDE} to a mirror URI"
    )


def host_debian_security_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The URI of the host's Debian security archive (a ``<codename>-security`` suite's source), else the main
    archive's URI with ``-security`` appended, as Debian lays its mirrors out; $GIGAFACTORY_DEBIAN_MIRROR's
    ``-security`` sibling when that is set."""
    if not os.environ.get(ENV_OVERRIDE):
        for source in apt_sources(apt_dir):
            if (source.enabled and source.type == "deb" and source.suite.endswith("-security")
                    and source.suite.removesuffix("-security") in DEBIAN_CODENAMES and "main" in source.components):
                return source.uri.rstrip("/")
    return host_debian_mirror(apt_dir) + "-security"
