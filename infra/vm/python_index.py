"""The test bed's Python package index: a wheelhouse on 127.0.0.1:3143 that guests reach as 10.0.2.2:3143.

The analogue of mirror_cache.py for pip. An execution host installs ansible-core, ansible-runner and what the
project's plugins import at the controller's exact versions (role execution_host, from the site's
``repositories.python``); a VM cannot reach the index this machine's pip is configured with (file:// indexes, local
find-links). So the test bed fills a wheelhouse with exactly those pins (``infra.runner.execution.execution_packages``,
the list the inventory gives the role) and their dependencies, for the guests' Python (Debian 13: CPython 3.13,
manylinux x86_64), through this machine's pip and its configured index, once per requirements set; and serves it as a
PEP 503 simple index (a directory per normalized project name; ``http.server``'s directory listing is a valid simple
page). A pin with no wheel (an sdist only) is built into a wheel here and must come out pure Python (``*-none-any``).

Layout: ``<cache root>/python-index/simple/<project>/<file>`` (every requirements set's wheels in one index: pip
takes the pinned version), ``sets/<key>.json`` for each set built; a test site's ``repositories.python`` is
``http://10.0.2.2:3143/simple``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from ..image.base import cache_root

PORT = 3143
GUEST_HOST = "10.0.2.2"            # this machine's loopback, seen from a QEMU guest with user-mode networking
MARKER = "gigafactory-python-index"
GUEST_PYTHON = "3.13"              # Debian 13's python3
GUEST_ABI = "cp313"
# Debian 13's glibc is 2.41: every manylinux tag up to it (pip does not expand a --platform to older ones).
GUEST_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 42)))


class PythonIndexError(RuntimeError):
    """The wheelhouse could not be built or served."""


def normalized(name: str) -> str:
    """PEP 503's normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def index_key(pins: Mapping[str, str]) -> str:
    """A requirements set's identity: a digest of the pins and the guests' Python and platforms."""
    text = json.dumps({"pins": dict(sorted(pins.items())), "python": GUEST_PYTHON, "abi": GUEST_ABI,
                       "platforms": GUEST_PLATFORMS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def index_root() -> Path:
    return cache_root() / "python-index"


GUEST_URL = f"http://{GUEST_HOST}:{PORT}/simple"     # what a test site's repositories.python says
HOST_URL = f"http://127.0.0.1:{PORT}/simple"


def _target() -> list[str]:
    """pip's options for the guests' interpreter: binary distributions only, CPython 3.13, manylinux x86_64."""
    flags = ["--only-binary=:all:", "--python-version", GUEST_PYTHON, "--implementation", "cp",
             "--abi", GUEST_ABI, "--abi", "abi3", "--abi", "none"]
    for platform in GUEST_PLATFORMS:
        flags += ["--platform", platform]
    return flags


def _pip(*args: str) -> subprocess.CompletedProcess:
    # this machine's pip and its configured index (pip config), quiet; the caller reads the error
    return subprocess.run([sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"],
                          capture_output=True, text=True)


def fill_wheelhouse(pins: Mapping[str, str], dest: Path) -> list[Path]:
    """Download each pin and its dependencies as wheels for the guests into ``dest``; a pin published only as an
    sdist is built into a wheel here, which must be pure Python. Returns the wheels."""
    dest.mkdir(parents=True, exist_ok=True)
    requirements = [f"{name}=={version}" for name, version in sorted(pins.items())]
    for req in requirements:
        got = _pip("download", "--no-deps", "--dest", str(dest), *_target(), req)
        if got.returncode == 0:
            continue
        built = _pip("wheel", "--no-deps", "--wheel-dir", str(dest), req)
        if built.returncode != 0:
            raise PythonIndexError(f"{req}: no wheel for CPython {GUEST_PYTHON} manylinux x86_64 and no sdist "
                                   f"that builds here: {(got.stderr + built.stderr).strip()[-600:]}")
        name = normalized(req.split("==")[0])
        impure = [w.name for w in dest.glob("*.whl")
                  if normalized(w.name.split("-")[0]) == name and not w.name.endswith("-none-any.whl")]
        if impure:
            raise PythonIndexError(f"{req}: only an sdist, and it builds a platform wheel ({impure[0]}) here, "
                                   "which would not fit the guests")
    deps = _pip("download", "--dest", str(dest), "--find-links", str(dest), *_target(), *requirements)
    if deps.returncode != 0:
        raise PythonIndexError(f"the dependencies of {', '.join(requirements)}: {deps.stderr.strip()[-600:]}")
    return sorted(dest.glob("*.whl"))


def simple_index(wheels: list[Path], simple: Path) -> None:
    """Lay ``wheels`` out as a PEP 503 simple index under ``simple``: a directory per normalized project name."""
    for wheel in wheels:
        project = simple / normalized(wheel.name.split("-")[0])
        project.mkdir(parents=True, exist_ok=True)
        shutil.copy2(wheel, project / wheel.name)


def build_index(pins: Mapping[str, str]) -> Path:
    """Add the wheels of ``pins`` to the cache root's simple index, once per requirements set (``sets/<key>.json``
    records a set as built; concurrent callers wait for the first). Every set's wheels share one index: pip picks
    the pinned version. Returns the index's ``simple`` directory."""
    root = index_root()
    root.mkdir(parents=True, exist_ok=True)
    built = root / "sets" / f"{index_key(pins)}.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if built.is_file():
            return root / "simple"
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            wheels = fill_wheelhouse(pins, Path(tmp) / "wheels")
            simple_index(wheels, root / "simple")
        built.parent.mkdir(exist_ok=True)
        built.write_text(json.dumps({"pins": dict(sorted(pins.items())), "wheels": [w.name for w in wheels]},
                                    indent=1) + "\n")
    return root / "simple"


def _serving() -> str | None:
    """The cache root the index on PORT serves (its marker file holds the path), or None if none of ours answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/{MARKER}", timeout=2) as reply:
            text = reply.read(4096).decode(errors="replace").strip()
    except OSError:
        return None
    first, _, served = text.partition(" ")
    return served if first == MARKER else None


def serve_index() -> None:
    """Serve the cache root's wheelhouses on 127.0.0.1:PORT unless ours already serves it there."""
    root = index_root()
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(f"{MARKER} {root}\n")
    served = _serving()
    if served == str(root):
        return
    if served is not None:
        raise PythonIndexError(f"127.0.0.1:{PORT} serves another cache root's Python index ({served}): stop it "
                               f"(its pid is in {served}/http.pid) or use that cache root ($GIGAFACTORY_CACHE)")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            raise PythonIndexError(f"127.0.0.1:{PORT} is taken by something that is not the test bed's Python index")
    with open(root / "http.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(PORT)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    (root / "http.pid").write_text(f"{server.pid}\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _serving() == str(root):
            return
        time.sleep(0.2)
    raise PythonIndexError(f"the Python index did not answer on 127.0.0.1:{PORT}; see {root / 'http.log'}")


def ensure_python_index(pins: Mapping[str, str]) -> str:
    """Build (once) and serve the wheels of ``pins``; return the URL guests give as ``repositories.python``."""
    build_index(pins)
    serve_index()
    return GUEST_URL
