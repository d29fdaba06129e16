"""An image's manifest: every Debian package installed in it, with its version and the repository it came from."""

from __future__ import annotations

from collections import Counter
from typing import Any

# Runs with the tree's own python3 (python3-apt is in every image): prints {"packages": [...]} as JSON.
MANIFEST_PROGRAM = r"""
import json
import apt_pkg

apt_pkg.init()
cache = apt_pkg.Cache(None)
records = apt_pkg.PackageRecords(cache)
sources = apt_pkg.SourceList()
sources.read_main_list()
packages = []
for pkg in cache.packages:
    ver = pkg.current_ver
    if ver is None:
        continue
    found = []
    for pf, _ in ver.file_list:
        if pf.not_source:
            continue
        index = sources.find_index(pf)
        uri = index.archive_uri("").rstrip("/") if index is not None else pf.site
        found.append({"uri": uri, "suite": pf.archive, "codename": pf.codename, "component": pf.component,
                      "origin": pf.origin, "label": pf.label})
    source = pkg.name
    if ver.file_list and records.lookup(ver.file_list[0]):
        source = records.source_pkg or pkg.name
    packages.append({"name": pkg.name, "architecture": ver.arch, "version": ver.ver_str, "source_package": source,
                     "sources": found})
packages.sort(key=lambda p: (p["name"], p["architecture"]))
print(json.dumps({"packages": packages}))
"""


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """Packages in all, and per source: the site's repository name, else the archive's URI; ``none`` for a package
    no configured repository offers at its installed version."""
    per: Counter[str] = Counter()
    for package in manifest["packages"]:
        names = {s.get("repository") or s["uri"] for s in package["sources"]} or {"none"}
        per.update(names)
    return {"packages": len(manifest["packages"]), "by_repository": dict(sorted(per.items()))}
