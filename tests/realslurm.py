"""A real Slurm of the site's target release in a Debian chroot, inside private namespaces.

Used by tests that must prove rendered configuration against the real daemons:
munged, MariaDB, slurmdbd and slurmctld run in a chroot of Debian 13 (Slurm 24.11),
in a network namespace of their own whose loopback carries the controller's and the
accounting host's planned addresses, so no packet ever leaves it.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

from chroots import cached_chroot

SUITE = "trixie"
PACKAGES = ["slurmctld", "slurmdbd", "slurm-client", "munge", "mariadb-server", "iproute2", "procps"]


_OVERLAYS: list[Path] = []


def slurm_chroot(slurmd: bool = False) -> Path:
    """A throw-away overlay of the cached chroot (built once per package list; needs root and debootstrap), with
    ``slurmd`` for real jobs. The test writes its configuration, keys, database and logs into the overlay's upper
    layer, never into the cache, so tests run side by side (pytest-xdist, two people); the overlay is unmounted and
    removed after the test (tests/conftest.py calls ``release_overlays``)."""
    base = cached_chroot("slurm", SUITE, [*PACKAGES, "slurmd"] if slurmd else PACKAGES)
    layers = Path(tempfile.mkdtemp(prefix="gigafactory-slurm-", dir="/var/tmp"))
    _OVERLAYS.append(layers)
    for name in ("upper", "work", "merged"):
        (layers / name).mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base},upperdir={layers / 'upper'},workdir={layers / 'work'}", str(layers / "merged")],
                   check=True)
    return layers / "merged"


def release_overlays() -> None:
    """Unmount and remove every overlay ``slurm_chroot`` made in this process."""
    while _OVERLAYS:
        layers = _OVERLAYS.pop()
        subprocess.run(["umount", "--lazy", str(layers / "merged")], check=False, capture_output=True)
        shutil.rmtree(layers, ignore_errors=True)


SCRIPT = textwrap.dedent("""\
    set -eu
    R={root}
    ip link set lo up
    {addresses}
    mount -t proc proc "$R/proc"
    mount -t tmpfs tmpfs "$R/run"
    rm -rf "$R/var/spool/slurmctld" "$R/var/log/slurm"   # fresh controller state and logs per run; the database below is fresh too
    mkdir -p "$R/run/munge" "$R/run/mysqld" "$R/var/log/slurm" "$R/var/spool/slurmctld" "$R/var/lib/slurm"
    chroot "$R" chown munge:munge /run/munge
    chroot "$R" chown mysql:mysql /run/mysqld
    chroot "$R" chown slurm:slurm /var/log/slurm /var/spool/slurmctld /var/lib/slurm
    chroot "$R" /usr/sbin/munged --force
    chroot "$R" /usr/sbin/mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock >"$R/var/log/mariadb.log" 2>&1 &
    # every wait is bounded in seconds, and every probe by its own timeout, so a daemon that does not
    # come up fails the run with its log instead of hanging it
    wait_for() {{ local limit=$1; shift; local end=$((SECONDS + limit))
      until timeout 10 "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || {{ echo "gave up waiting for: $*" >&2; return 1; }}
        [ -z "${{ALIVE:-}}" ] || kill -0 "$ALIVE" 2>/dev/null || {{ echo "exited while waited for: $*" >&2; return 1; }}; sleep 1; done; }}
    wait_for 90 chroot "$R" mariadb -e 'select 1'
    # a fresh accounting database per run, created before slurmdbd starts, as the slurm_dbd role does: Debian 13's
    # slurmdbd 24.11.5 with libmariadb3 11.8.9 dies on a first start that has to create it itself
    # ("_check_mysql_concat_is_sane: ... exceeds maximum allowed number of columns (=0)")
    chroot "$R" mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db; CREATE DATABASE slurm_acct_db;"
    chroot "$R" mariadb -e "CREATE OR REPLACE USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    unshare --uts sh -c 'hostname {dbd_host}; exec chroot "$0" /usr/sbin/slurmdbd -D' "$R" >"$R/var/log/slurm/slurmdbd.out" 2>&1 &
    wait_for 120 chroot "$R" sacctmgr -n list cluster
    timeout 60 chroot "$R" sacctmgr -i add cluster {cluster} >/dev/null || true
    unshare --uts sh -c 'hostname {ctld_host}; exec chroot "$0" /usr/sbin/slurmctld -D -i' "$R" >"$R/var/log/slurm/slurmctld.out" 2>&1 &
    ALIVE=$!   # a slurmctld that stops on its configuration (fatal) fails the wait at once
    wait_for 120 sh -c 'chroot "$0" scontrol ping | grep -q UP' "$R"
    ALIVE=
    {slurmd}
    echo READY
    {commands}
    """)


SLURMD = textwrap.dedent("""\
    mkdir -p "$R/var/spool/slurmd/{node}"
    unshare --uts sh -c 'hostname {node}; exec chroot "$0" /usr/sbin/slurmd -D -N {node}' "$R" >"$R/var/log/slurm/{out}" 2>&1 &
    """)
# every node idle, asked once for all of them (one sinfo a second, however many slurmd)
SLURMD_READY = """wait_for 180 sh -c 'test "$(chroot "$0" sinfo --noheader -N -n {nodes} -o %t | sort -u)" = idle' "$R"\n"""
FIRST_PORT = 6830                       # slurmd ports from here up, clear of slurmctld's 6817 and slurmdbd's 6819


def separate_slurmd(conf: str, hostlist: str, nodes: dict[str, str]) -> str:
    """A rendered slurm.conf for several slurmd on one machine: the ``NodeName=<hostlist>`` line split into one line
    per node with its own loopback address (``NodeAddr``, in place of the planned one) and ``Port=``, and ``%n`` in each slurmd's spool directory,
    pid file and log file (SchedMD's FAQ, "Can Slurm emulate a larger cluster?")."""
    line = re.search(rf"^NodeName={re.escape(hostlist)} NodeAddr=\S+ (.*)$", conf, flags=re.MULTILINE)
    assert line, conf
    per_node = "\n".join(f"NodeName={n} NodeAddr={a} Port={FIRST_PORT + i} {line.group(1)}"
                         for i, (n, a) in enumerate(nodes.items()))
    conf = conf.replace(line.group(0), per_node)
    for key, value in (("SlurmdSpoolDir", "/var/spool/slurmd/%n"), ("SlurmdPidFile", "/run/slurmd-%n.pid"),
                       ("SlurmdLogFile", "/var/log/slurm/slurmd-%n.log")):
        conf = re.sub(rf"^{key}=.*$", f"{key}={value}", conf, flags=re.MULTILINE)
    return conf


def run_in_slurm(root: Path, files: dict[str, str], controller: tuple[str, str], dbd: tuple[str, str],
                 cluster: str, commands: list[str], timeout: int = 600,
                 host_commands: list[str] = (), slurmd: tuple[str, str] | list[tuple[str, str]] | None = None,
                 host_timeout: int = 300, slurmd_ready_s: int = 180) -> subprocess.CompletedProcess:
    """Start munged, MariaDB, slurmdbd and slurmctld on ``files`` and run ``commands`` in the chroot.

    ``host_commands`` run after them outside the chroot, inside the same namespaces (``$R`` is the chroot).
    ``slurmd`` (node name, address) also starts slurmd as that node (the chroot of ``slurm_chroot(slurmd=True)``)
    and waits until the controller sees it idle; a list of them starts one slurmd per node, each in its own UTS
    namespace with its own loopback address; slurm.conf then gives each its own ``Port=`` and
    ``SlurmdSpoolDir=/var/spool/slurmd/%n`` (each node's directory is made here). ``host_commands`` each get
    ``host_timeout`` seconds. The slurmd get ``slurmd_ready_s`` seconds to be idle, all of them; when they were
    started is written to ``/var/log/slurm/started-slurmd`` in the chroot (``date +%s.%N``), for a benchmark.

    Everything runs in fresh network, UTS, mount and PID namespaces: the daemons die
    with the namespace, and the planned addresses exist only on its loopback.
    """
    etc = root / "etc" / "slurm"
    for old in etc.glob("*.conf"):
        old.unlink()
    for rel, content in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    key = root / "etc" / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(128))
    key.chmod(0o400)
    password = secrets.token_urlsafe(24)
    dbd_conf = etc / "slurmdbd.conf"
    dbd_conf.write_text(textwrap.dedent(f"""\
        AuthType=auth/munge
        DbdHost={dbd[0]}
        DbdAddr={dbd[1]}
        SlurmUser=slurm
        StorageType=accounting_storage/mysql
        StorageHost=localhost
        StorageLoc=slurm_acct_db
        StorageUser=slurm
        StoragePass={password}
        LogFile=/var/log/slurm/slurmdbd.log
        PidFile=/run/slurmdbd.pid
        """))
    dbd_conf.chmod(0o600)
    subprocess.run(["chroot", str(root), "chown", "munge:munge", "/etc/munge/munge.key"], check=True)
    subprocess.run(["chroot", str(root), "chown", "slurm:slurm", "/etc/slurm/slurmdbd.conf"], check=True)
    nodes = [] if slurmd is None else [slurmd] if isinstance(slurmd, tuple) else list(slurmd)
    addresses = "\n".join(f"ip addr add {a}/32 dev lo" for a in sorted({controller[1], dbd[1], *(n[1] for n in nodes)}))
    start_slurmd = "".join(
        ['rm -rf "$R/var/spool/slurmd"; mkdir -p "$R/var/spool/slurmd"; date +%s.%N >"$R/var/log/slurm/started-slurmd"\n'
         if nodes else "",
         *(SLURMD.format(node=n, out="slurmd.out" if len(nodes) == 1 else f"slurmd-{n}.out") for n, _ in nodes),
         SLURMD_READY.format(nodes=",".join(n for n, _ in nodes)).replace("wait_for 180 ", f"wait_for {slurmd_ready_s} ")
         if nodes else ""])
    script = SCRIPT.format(root=root, addresses=addresses, dbd_host=dbd[0], ctld_host=controller[0], cluster=cluster,
                           slurmd=start_slurmd,
                           commands="\n".join([*(f'timeout 60 chroot "$R" {c}' for c in commands),
                                                *(f"timeout {host_timeout} {c}" for c in host_commands)]))
    with tempfile.TemporaryDirectory(prefix="gigafactory-run-in-slurm-") as tmp:   # a file: 1,000 slurmd's lines pass
        (Path(tmp) / "run.sh").write_text(script)                           # the kernel's 128 KiB for one argument
        return subprocess.run(["unshare", "--net", "--uts", "--mount", "--pid", "--fork", "--kill-child", "bash",
                               f"{tmp}/run.sh"], capture_output=True, text=True, timeout=timeout,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DBPASS": password})


def daemon_logs(root: Path) -> str:
    logs = []
    base = root / "var" / "log" / "slurm"
    names = ["slurmctld.out", "slurmctld.log", "slurmdbd.out", "slurmdbd.log", "slurmd.out", "slurmd.log",
             *sorted(p.name for p in base.glob("slurmd-*"))] if base.is_dir() else []
    for name in names:
        path = base / name
        if path.exists():
            logs.append(f"--- {name}\n" + path.read_text()[-3000:])
    return "\n".join(logs)


def record_scenario(scenario, cluster, out: Path) -> int:
    """A driver's scenario run inside the daemons' namespaces (``host_commands``): what it recorded, and ``done`` or
    the error that stopped it, written to ``out/record.json`` for the tests to read (exit 0 either way)."""
    record: dict = {}
    try:
        scenario(cluster, record)
        record["done"] = True
    except (AssertionError, subprocess.SubprocessError, OSError, ValueError, KeyError) as error:
        record["error"] = f"{type(error).__name__}: {error}"
    (out / "record.json").write_text(json.dumps(record, indent=1))
    return 0
