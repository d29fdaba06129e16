"""The test bed's site mirror: apt-cacher-ng on 127.0.0.1:3142, in front of the host's Debian mirror.

A site file for VMs names its Debian mirror as ``http://10.0.2.2:3142/debian`` (its security suite then comes
from ``http://10.0.2.2:3142/debian-security``, the base role's default, mapped to the host's security archive):
inside a QEMU guest with user-mode networking, 10.0.2.2 is this machine's
loopback. So test sites are air-gapped like real ones (they name their own
mirror, never the internet's), and every package the VMs fetch is cached once
per machine: later scenarios and CI's repeated installs read it from disk.
The upstream is read from the host's apt sources at run time.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from ..image.base import cache_root
from ..image.mirror import host_debian_mirror, host_debian_security_mirror

PORT = 3142
GUEST_URL = f"http://10.0.2.2:{PORT}/debian"     # what a test site's repositories.debian says
HOST_URL = f"http://127.0.0.1:{PORT}/debian"


class MirrorCacheError(RuntimeError):
    """apt-cacher-ng could not be started."""


def _answering() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/acng-report.html", timeout=2) as reply:
            return b"apt-cacher-ng" in reply.read(4096).lower() or reply.status == 200
    except OSError:
        return False


def _ours(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().split()[0])
        return "apt-cacher-ng" in Path(f"/proc/{pid}/cmdline").read_text()
    except (OSError, ValueError, IndexError):
        return False


def _configuration(root: Path) -> dict[str, str]:
    """apt-cacher-ng's configuration files: /debian and /debian-security mapped to the host's archives."""
    cache, logs = root / "cache", root / "log"
    return {
        "backends_debian": host_debian_mirror() + "/\n",
        "backends_debian_security": host_debian_security_mirror() + "/\n",
        "acng.conf": (f"CacheDir: {cache}\nLogDir: {logs}\nSupportDir: /usr/lib/apt-cacher-ng\n"
                      f"Port: {PORT}\nBindAddress: 127.0.0.1\nPidFile: {root / 'acng.pid'}\n"
                      "Remap-debrep: /debian ; file:backends_debian\n"
                      "Remap-debsec: /debian-security ; file:backends_debian_security\n"
                      "ReportPage: acng-report.html\nExThreshold: 30\n"),
    }


def _stop(pidfile: Path) -> None:
    """Stop our apt-cacher-ng (the pid file's process, checked to be apt-cacher-ng) and wait for the port."""
    pid = int(pidfile.read_text().split()[0])
    os.kill(pid, 15)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _answering():
        time.sleep(0.2)


def ensure_mirror_cache() -> str:
    """Start apt-cacher-ng unless ours already answers with this configuration; return the URL guests use."""
    root = cache_root() / "apt-cacher-ng"
    conf, cache, logs = root / "conf", root / "cache", root / "log"
    wanted = _configuration(root)
    if _answering():
        if not _ours(root / "acng.pid"):
            raise MirrorCacheError(f"another apt-cacher-ng answers on port {PORT} (the distribution's service?): "
                                   "stop it with 'service apt-cacher-ng stop'")
        if all((conf / name).is_file() and (conf / name).read_text() == text for name, text in wanted.items()):
            return GUEST_URL
        _stop(root / "acng.pid")     # ours, started with an older configuration (before /debian-security, say)
    binary = shutil.which("apt-cacher-ng") or "/usr/sbin/apt-cacher-ng"
    if not os.path.exists(binary):
        raise MirrorCacheError("apt-cacher-ng is not installed (see .ci/apt-packages.txt)")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            raise MirrorCacheError(f"127.0.0.1:{PORT} is taken by something that is not apt-cacher-ng")
    for folder in (conf, cache, logs):
        folder.mkdir(parents=True, exist_ok=True)
    for name, text in wanted.items():
        (conf / name).write_text(text)
    subprocess.Popen([binary, "-c", str(conf), "ForeGround=1"], stdout=subprocess.DEVNULL,
                     stderr=open(logs / "stderr.log", "ab"), start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _answering():
            return GUEST_URL
        time.sleep(0.2)
    raise MirrorCacheError(f"apt-cacher-ng did not answer on 127.0.0.1:{PORT}; see {logs}")
