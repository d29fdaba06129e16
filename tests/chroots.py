"""Cached Debian chroots for tests that need a distribution's real packages and daemons on this machine.

Built once per (suite, packages, components) with debootstrap from the host's mirror (needs root), kept under
the test bed's cache, never changed by a test: a test that installs into one works on an overlay of it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import yaml

from infra.image.chroot import Chroot
from infra.image.base import cached_debootstrap


def cached_chroot(prefix: str, suite: str, packages: list[str], components: tuple[str, ...] = ("main",),
                  variant: str = "minbase") -> Path:
    """The chroot for this package list from this machine's mirror (the image builder's cached base, one
    implementation: infra/image/base.py's ``cached_debootstrap``)."""
    return cached_debootstrap(prefix, suite, packages, components=components, variant=variant)


def overlay_setup(base: Path, layers: Path) -> str:
    """Shell lines (for ``Chroot``'s ``setup``) that mount a throw-away overlay of ``base`` at ``layers/merged``;
    ``layers`` keeps what was written, the mount dies with the namespace."""
    dirs = {name: layers / name for name in ("upper", "work", "merged")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return (f"mount -t overlay overlay -o lowerdir={base},upperdir={dirs['upper']},workdir={dirs['work']} "
            f"{dirs['merged']} || exit 90")


class RoleRun:
    """Ansible on this machine, modules in a throw-away overlay of a cached chroot: the plays' host is the chroot.

    The chroot is the project's chroot runner (infra/image/chroot.py: a private mount namespace, a private /dev,
    no service starts, the chroot's own python3 as Ansible's interpreter); ``run`` mounts the overlay there for one
    shell body (state carries over in the overlay's upper layer), and every step logs to ``logs/<name>``.
    """

    def __init__(self, tmp_path: Path, site: dict, play: str, base: Path | None = None):
        # by default a Debian 13 node as the roles expect one: Python with APT's bindings, non-free reachable
        self.base = base or cached_chroot("node", "trixie", ["python3", "python3-apt"], components=("main", "contrib", "non-free"))
        self.site = tmp_path / "site.yml"
        self.site.write_text(yaml.safe_dump(site))
        self.play = tmp_path / "play.yml"
        self.play.write_text(play)
        self.logs = tmp_path / "logs"
        self.layers = tmp_path / "layers"
        for path in (self.logs, self.layers):
            path.mkdir(exist_ok=True)
        self.chroot_runner = Chroot(self.layers / "merged", tmp_path / "namespace",
                                    setup=overlay_setup(self.base, self.layers))
        self.python, self.tmp = self.chroot_runner.python, self.chroot_runner.tmp
        root = Path(__file__).resolve().parent.parent
        self.env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), ANSIBLE_ROLES_PATH=str(root / "playbooks" / "roles"))
        self.cwd = root
        self.ansible_playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"

    def converge(self, name: str) -> str:
        """Shell lines: the play once, its output in logs/<name>.log and its exit status in logs/<name>.rc."""
        return (f"{self.ansible_playbook} -i {self.site} -e ansible_python_interpreter={self.python} "
                f"-e ansible_remote_tmp={self.tmp} {self.play} > {self.logs}/{name}.log 2>&1\n"
                f"echo $? > {self.logs}/{name}.rc\n")

    def chroot(self, name: str, command: str) -> str:
        """Shell line: ``command`` (a shell string) run in the chroot, its output in logs/<name>."""
        quoted = command.replace("'", "'\\''")
        return f"chroot \"$R\" /bin/bash -c '{quoted}' > {self.logs}/{name} 2>&1\n"

    def run(self, body: str, timeout: int = 900) -> None:
        with self.chroot_runner as namespace:
            result = namespace.shell("set +e\n" + body, cwd=self.cwd, env=self.env, timeout=timeout, check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")

    def changed(self, name: str, host: str) -> int:
        """How many tasks the converge ``name`` changed on ``host`` (it must have succeeded)."""
        log = (self.logs / f"{name}.log").read_text()
        assert (self.logs / f"{name}.rc").read_text().strip() == "0", log[-4000:]
        recap = re.search(rf"{re.escape(host)}\s*:\s*ok=\d+\s+changed=(\d+)\s", log)
        assert recap, log[-2000:]
        return int(recap.group(1))

    def log(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in self.logs.iterdir()}

    def clean(self) -> None:
        """Drop the overlay's layers (gigabytes after a toolkit install)."""
        shutil.rmtree(self.layers, ignore_errors=True)
