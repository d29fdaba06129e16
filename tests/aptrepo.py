"""A signed flat APT repository on loopback, for tests of the roles' APT handling against a real APT.

The packages are built with dpkg-deb and indexed with dpkg-scanpackages; the Release file is signed with a key made
for the test (gpg), so APT checks it exactly as it checks a site's mirror named with Signed-By. Packages carry only
what a test says (a name, a version, files): they stand in for vendor packages no registry here offers; the APT
behaviour (candidates, pins, holds, upgrades) is APT's own.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import threading
from email.utils import formatdate
from pathlib import Path


class Repository:
    def __init__(self, root: Path, gnupg: Path):
        self.root = root
        self.root.mkdir(parents=True)
        self.gnupg = gnupg
        gnupg.mkdir(mode=0o700)
        self._gpg("--quick-generate-key", "gigafactory test mirror <mirror@test.invalid>", "ed25519", "sign", "never")
        handler = functools.partial(_Quiet, directory=str(root))
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def _gpg(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              env=dict(os.environ, GNUPGHOME=str(self.gnupg)), check=True, capture_output=True, **kwargs)

    def keyring(self) -> bytes:
        """The public key as a binary keyring (what Signed-By names)."""
        return self._gpg("--export").stdout

    def add(self, name: str, version: str, files: dict[str, str] | None = None, depends: str = "") -> None:
        tree = self.root.parent / "build" / f"{name}_{version}"
        (tree / "DEBIAN").mkdir(parents=True)
        control = [f"Package: {name}", f"Version: {version}", "Architecture: all", "Maintainer: test <test@test.invalid>",
                   f"Description: {name} (test package)"] + ([f"Depends: {depends}"] if depends else [])
        (tree / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        for path, content in (files or {}).items():
            target = tree / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(0o755)
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(self.root / f"{name}_{version}_all.deb")],
                       check=True, capture_output=True)

    def publish(self) -> None:
        """Index and sign what was added (call again after adding more: an upstream sync)."""
        packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=self.root, check=True,
                                  capture_output=True).stdout
        (self.root / "Packages").write_bytes(packages)
        release = ["Origin: gigafactory-test", "Label: gigafactory-test", f"Date: {formatdate(usegmt=True)}", "SHA256:",
                   f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages"]
        (self.root / "Release").write_text("\n".join(release) + "\n")
        (self.root / "InRelease").unlink(missing_ok=True)
        self._gpg("--clearsign", "--output", str(self.root / "InRelease"), str(self.root / "Release"))

    def close(self) -> None:
        self.http.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
