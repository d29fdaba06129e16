"""A signed flat APT repository on loopback, for tests of the roles' APT handling against a real APT.

The packages are built with dpkg-deb and indexed with dpkg-scanpackages; the Release file is signed with a key made
for the test (gpg), so APT checks it exactly as it checks a site's mirror named with Signed-By (the tests hand the
key to the roles through the site file's ``signed_by``). Flat (``Suites: /``) or with a suite (``dists/<suite>/main``). Packages carry only
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

    def armored(self) -> bytes:
        """The public key, ASCII-armoured."""
        return self._gpg("--export", "--armor").stdout

    def fingerprint(self) -> str:
        """The signing key's fingerprint (40 hex digits)."""
        out = self._gpg("--with-colons", "--fingerprint").stdout.decode()
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

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

    def publish(self, suite: str | None = None) -> None:
        """Index and sign what was added (call again after adding more: an upstream sync); flat, or as ``suite``
        with one component, main."""
        packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=self.root, check=True,
                                  capture_output=True).stdout
        top, index, header = self.root, "Packages", []
        if suite:
            top, index = self.root / "dists" / suite, "main/binary-amd64/Packages"
            header = [f"Suite: {suite}", f"Codename: {suite}", "Components: main", "Architectures: amd64"]
        (top / index).parent.mkdir(parents=True, exist_ok=True)
        (top / index).write_bytes(packages)
        release = ["Origin: gigafactory-test", "Label: gigafactory-test", *header, f"Date: {formatdate(usegmt=True)}", "SHA256:",
                   f" {hashlib.sha256(packages).hexdigest()} {len(packages)} {index}"]
        (top / "Release").write_text("\n".join(release) + "\n")
        (top / "InRelease").unlink(missing_ok=True)
        self._gpg("--clearsign", "--output", str(top / "InRelease"), str(top / "Release"))

    def close(self) -> None:
        self.http.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
