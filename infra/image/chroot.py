"""Ansible and package managers against a Debian root tree on this machine, natively: no VM, no emulation.

``Chroot`` holds a private mount namespace (``unshare --mount``) open while it is used. In it the tree gets /proc,
a private tmpfs /dev with only null, zero, random, urandom and tty (never this machine's /dev), a scratch folder
bound at the same path inside and out (Ansible's module files), this machine's resolv.conf, and a policy-rc.d that
denies every service start. Commands enter the namespace with ``nsenter``; Ansible's interpreter is a wrapper that
runs the tree's own python3 there (``chroot <root> /usr/bin/python3``), so APT, dpkg and every file a module writes
act on the tree. The mounts die with the namespace, also when this process is killed; the tree's own resolv.conf
and policy-rc.d are put back when the namespace ends.

With ``relays`` the namespace also has a private network (loopback only), where each (address, port) is relayed to
a (host, port) of this machine (``relay.py``): a test bed's mirror, which its site names by the guests' address.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ..project import REPO_ROOT
from .relay import UnixToTcp

DEV_NODES: dict[str, tuple[int, int]] = {"null": (1, 3), "zero": (1, 5), "random": (1, 8), "urandom": (1, 9),
                                         "tty": (5, 0)}
DEV_LINKS: dict[str, str] = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                             "stderr": "/proc/self/fd/2"}

Relays = Mapping[tuple[str, int], tuple[str, int]]


class ChrootError(RuntimeError):
    """The namespace could not be set up, or a command in it failed."""


def _q(value: object) -> str:
    return shlex.quote(str(value))


def namespace_script(root: Path, scratch: Path, tmp: Path, setup: str = "", relays: Relays | None = None) -> str:
    """The bash script the namespace's first process runs: mounts, then ``ready <pid>``, then it waits for EOF on
    its stdin and puts the tree's resolv.conf and policy-rc.d back."""
    saved = scratch / "saved"
    lines = ["set -eu", f"R={_q(root)}", setup,
             'mount -t proc proc "$R/proc"',
             'mount -t tmpfs -o mode=0755,nosuid,noexec,size=64k gigafactory-dev "$R/dev"']
    lines += [f'mknod -m 0666 "$R/dev/{name}" c {major} {minor}' for name, (major, minor) in DEV_NODES.items()]
    # the links every system has (udev makes them): programs read /dev/stdin (mariadb --defaults-extra-file=/dev/stdin)
    lines += [f'ln -s {target} "$R/dev/{name}"' for name, target in DEV_LINKS.items()]
    lines += [f'mkdir -p "$R"{_q(tmp)}', f'mount --bind {_q(tmp)} "$R"{_q(tmp)}',
              # Kept aside and put back when the namespace ends; a symlink is replaced, never written through
              # (its target may be outside the tree).
              f"rm -rf {_q(saved)}; mkdir -p {_q(saved)}",
              'for f in etc/resolv.conf usr/sbin/policy-rc.d; do',
              f'  if [ -e "$R/$f" ] || [ -L "$R/$f" ]; then cp -a "$R/$f" {_q(saved)}/; fi; done',
              "relays=",
              "restore() {",
              '  [ -z "$relays" ] || kill $relays 2>/dev/null || true',
              '  rm -f "$R/etc/resolv.conf" "$R/usr/sbin/policy-rc.d"',
              f'  for f in etc/resolv.conf usr/sbin/policy-rc.d; do b=$(basename "$f"); '
              f'if [ -e {_q(saved)}/"$b" ] || [ -L {_q(saved)}/"$b" ]; then cp -a {_q(saved)}/"$b" "$R/$f"; fi; done',
              "}",
              "trap restore EXIT",
              "trap 'exit 143' TERM INT HUP",
              'rm -f "$R/etc/resolv.conf"; cp /etc/resolv.conf "$R/etc/resolv.conf"',
              """printf '#!/bin/sh\\n# gigafactory: no service starts in a tree being built\\nexit 101\\n' > "$R/usr/sbin/policy-rc.d\"""",
              'chmod 0755 "$R/usr/sbin/policy-rc.d"']
    if relays:
        lines.append("ip link set lo up")
        for i, (address, port) in enumerate(relays):
            ready = scratch / f"relay{i}.ready"
            lines += [f"ip addr add {_q(address)}/32 dev lo 2>/dev/null || true",
                      f"rm -f {_q(ready)}",
                      f"PYTHONPATH={_q(REPO_ROOT)} {_q(sys.executable)} -m infra.image.relay {_q(address)} {int(port)} "
                      f"{_q(scratch / f'relay{i}.sock')} {_q(ready)} </dev/null >/dev/null 2>&1 &",
                      'relays="$relays $!"',
                      f"for _ in $(seq 100); do [ -e {_q(ready)} ] && break; sleep 0.05; done",
                      f"[ -e {_q(ready)} ] || {{ echo 'relay for {address}:{port} did not start' >&2; exit 1; }}"]
    lines += ['echo "ready $$"', "read -r _ || true"]
    return "\n".join(lines) + "\n"


class Chroot:
    """A Debian root tree ready for Ansible in a private mount namespace, for the life of a ``with`` block.

    ``setup``: shell lines run first in the namespace (a test mounts an overlay at ``root`` there).
    ``python``: the wrapper to give Ansible as ``ansible_python_interpreter``; ``tmp``: its ``ansible_remote_tmp``.
    """

    def __init__(self, root: Path, scratch: Path, *, setup: str = "", relays: Relays | None = None):
        self.root, self.scratch, self.setup, self.relays = Path(root), Path(scratch), setup, dict(relays or {})
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.tmp = self.scratch / "ansible-tmp"
        self.tmp.mkdir(mode=0o700, exist_ok=True)
        self.pid_file = self.scratch / "namespace.pid"
        self.python = self.scratch / "python3-in-chroot"
        self.python.write_text(f'#!/bin/sh\nexec {shlex.join(self._nsenter_prefix())} '
                               f'chroot {_q(self.root)} /usr/bin/python3 "$@"\n'.replace("@PID@", f'"$(cat {_q(self.pid_file)})"'))
        self.python.chmod(0o755)
        self._holder: subprocess.Popen | None = None
        self._relays: list[UnixToTcp] = []

    def _nsenter_prefix(self, pid: str = "@PID@") -> list[str]:
        return ["nsenter", "-t", pid, "-m", *(["-n"] if self.relays else []), "--"]

    def nsenter(self) -> list[str]:
        """The command prefix that runs a program in the namespace (outside the tree)."""
        if self._holder is None:
            raise ChrootError("the namespace is not open")
        return self._nsenter_prefix(str(self._pid))

    def __enter__(self) -> Chroot:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for i, target in enumerate(self.relays.values()):
            sock = self.scratch / f"relay{i}.sock"
            sock.unlink(missing_ok=True)
            self._relays.append(UnixToTcp(sock, target))
        script = namespace_script(self.root, self.scratch, self.tmp, self.setup, self.relays)
        argv = ["unshare", "--mount", "--propagation", "private", "--fork", "--kill-child",
                *(["--net"] if self.relays else []), "bash", "-c", script]
        errors = self.scratch / "namespace.stderr"
        with open(errors, "wb") as err:
            self._holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                            start_new_session=True)
        line = self._holder.stdout.readline().decode(errors="replace").split()
        if len(line) != 2 or line[0] != "ready":
            self.stop()
            raise ChrootError(f"the build namespace for {self.root} did not start: "
                              f"{errors.read_text(errors='replace').strip()[-1000:] or 'no reason given'}")
        self._pid = int(line[1])
        self.pid_file.write_text(f"{self._pid}\n")

    def stop(self) -> None:
        """End the namespace (its mounts with it) and put the tree's files back; safe to call twice."""
        holder, self._holder = self._holder, None
        if holder is not None:
            try:
                holder.stdin.close()
                holder.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                _kill_group(holder)
        for relay in self._relays:
            relay.close()
        self._relays = []
        self.pid_file.unlink(missing_ok=True)

    def shell(self, body: str, *, timeout: float | None = None, env: Mapping[str, str] | None = None,
              cwd: Path | None = None, check: bool = True, stdout=None) -> subprocess.CompletedProcess:
        """Run a bash ``body`` in the namespace (``$R`` is the tree); ``check`` raises ChrootError on failure."""
        argv = [*self.nsenter(), "bash", "-c", f"set -eu\nR={_q(self.root)}\n{body}"]
        return run_group(argv, timeout=timeout, env=env, cwd=cwd, check=check, stdout=stdout)

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the tree (chroot) in the namespace."""
        return self.shell(f'exec chroot "$R" {shlex.join(argv)}', **kwargs)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_group(argv: list[str], *, timeout: float | None = None, env: Mapping[str, str] | None = None,
              cwd: Path | None = None, check: bool = True, stdout=None) -> subprocess.CompletedProcess:
    """``argv`` in its own process group, which is ended (by its id) on timeout, Ctrl-C or any exception here."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE if stdout is None else stdout, stderr=subprocess.PIPE,
                            env=None if env is None else dict(env), cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill_group(proc)
        raise
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and proc.returncode != 0:
        text = (err or b"").decode(errors="replace").strip()[-2000:]
        raise ChrootError(f"{shlex.join(argv[-3:])[:200]} exited with {proc.returncode}: {text}")
    return result
