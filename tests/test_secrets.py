"""Secrets stay secret: the phases' secret-handling tasks, run by ``gigafactory up`` (infra/orchestrate, through
ansible-runner) into throw-away overlays of cached Debian 13 chroots, leave no secret in the run directory, in what
``up`` prints, or on any command line or in any environment of the machine while they run.

- slurm: the slurm_dbd role's database tasks (``tasks/database.yml``: the password from the secret store, the login
  check, the statements that create the user and set its password) against a real MariaDB in the chroot; the
  password is then proved to work, and rotated.
- kubernetes: the kubernetes role's ``kubeadm init`` and ``kubeadm join`` steps (``tasks/bootstrap.yml``) for riga-1's
  first two control planes. No kubeadm can be installed here (it is in no registry these machines reach), so
  ``kubeadm`` in the chroot is a stand-in script: it prints what kubeadm 1.33 prints, in its format (the bootstrap
  token and certificate key among it), with values this test draws at random, and ``kubeadm join`` checks that the
  join configuration carries the token and key it handed out. What is proved is what the role does with kubeadm's
  output; not kubeadm.

While a run goes, a thread reads every process's command line and environment (/proc/*/cmdline, /proc/*/environ)
in a loop. Afterwards every file under the run directory is searched for each secret's value.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import threading
from pathlib import Path

import pytest
import yaml

from conftest import DEMO, RIGA, ROOT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap") or not shutil.which("unshare"),
                       reason="needs root, debootstrap and unshare"),
]


class ProcessWatch:
    """Every distinct command line and environment seen on this machine while the watch runs."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.sweeps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                for name in ("cmdline", "environ"):
                    try:
                        with open(f"/proc/{pid}/{name}", "rb") as f:
                            self.seen.add(f.read())
                    except OSError:
                        pass
            self.sweeps += 1

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def holding(self, secret: str) -> list[str]:
        return [s.replace(b"\0", b" ").decode(errors="replace")[:300] for s in self.seen if secret.encode() in s]


def files_holding(run_dir: Path, secret: str) -> list[str]:
    files = [p for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(files) > 10, files                       # the run wrote its events, stdout and artifacts
    return [str(p) for p in files if secret.encode() in p.read_bytes()]


UP = """\
import json, sys
from pathlib import Path
from infra.orchestrate import Phase, UpOptions, up
a = json.loads(Path(sys.argv[1]).read_text())
outcome = up(UpOptions(site=Path(a["site"]), phases=(Phase(a["phase"], tuple(a["groups"])),), limit=a["limit"],
                       batch=["100%"], playbook_dir=Path(a["playbooks"]), run_dir=Path(a["run_dir"]),
                       extravars=a["extravars"]))
print("EXIT", outcome.exit_code)
"""


def linear(site: Path, tmp_path: Path) -> Path:
    """The site as it is, or, when it chooses a Mitogen strategy (the demo does), a copy of its folder with the
    linear one: these runs reach the chroot through ``ansible_python_interpreter`` (the chroot runner's wrapper),
    which Mitogen's local connection does not use (it runs modules in its own interpreter on this machine)."""
    data = yaml.safe_load(site.read_text())
    if not str((data.get("provisioning") or {}).get("strategy", "linear")).startswith("mitogen_"):
        return site
    folder = tmp_path / f"site-{site.parent.name}"
    if not folder.exists():
        shutil.copytree(site.parent, folder)
        data["provisioning"]["strategy"] = "linear"
        (folder / site.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / site.name


def up_in(run, tmp_path: Path, name: str, site: Path, phase: str, groups: list[str], limit: str, play: str,
          extravars: dict) -> str:
    """Shell lines: ``gigafactory up`` of one phase (its playbook ``play``) into the overlay; output in logs/<name>."""
    site = linear(site, tmp_path)
    books = tmp_path / f"playbooks-{name}"
    books.mkdir()
    (books / f"{phase}.yml").write_text(play)
    args = tmp_path / f"{name}.json"
    args.write_text(json.dumps({
        "site": str(site), "phase": phase, "groups": groups, "limit": limit, "playbooks": str(books),
        "run_dir": str(tmp_path / "runs" / name),
        "extravars": {"ansible_connection": "local", "ansible_python_interpreter": str(run.python),
                      "ansible_remote_tmp": str(run.tmp), **extravars}}))
    script = tmp_path / "up.py"
    script.write_text(UP)
    return (f"env PYTHONPATH={ROOT} GIGAFACTORY_SECRETS={tmp_path / 'secrets'} {sys.executable} {script} {args} "
            f"> {run.logs}/{name} 2>&1\n")


DBD_PLAY = """\
- name: The slurm phase's accounting database (slurm_dbd's database tasks) on the accounting host
  hosts: slurm_dbd
  gather_facts: false
  tasks:
    - name: The accounting database, its user and password
      ansible.builtin.include_role:
        name: slurm_dbd
        tasks_from: database
"""

MARIADB = """\
mkdir -p "$R/run/mysqld" && chroot "$R" chown mysql:mysql /run/mysqld
chroot "$R" /usr/sbin/mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock > {logs}/mariadbd 2>&1 &
for i in $(seq 90); do chroot "$R" mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 1; done
"""

STOP_MARIADB = 'chroot "$R" mariadb-admin shutdown\nwait\n'


def test_the_accounting_database_password_is_in_no_run_dir_and_on_no_command_line(tmp_path):
    from chroots import RoleRun, cached_chroot

    run = RoleRun(tmp_path, {}, "", base=cached_chroot("dbd", "trixie", ["python3", "mariadb-server"]))
    (tmp_path / "runs").mkdir()
    login = tmp_path / "login.cnf"     # the test's own check of the password, as slurmdbd would use it

    def check_login(name: str, generation: int) -> str:
        password = tmp_path / "secrets" / f"slurmdbd.db-password.{generation}"
        return (f'install -m 0600 /dev/null {login} && printf "[client]\\npassword=%s\\n" "$(cat {password})" > {login}\n'
                + f'cp {login} "$R/root/login.cnf"\n'
                + run.chroot(name, "mariadb --defaults-extra-file=/root/login.cnf --user=slurm --database=slurm_acct_db "
                                   "--batch --skip-column-names --execute='SELECT CURRENT_USER()'; echo rc=$?"))

    rotate = {"slurm_dbd_password_generation": 2}
    try:
        with ProcessWatch() as watch:
            run.run(MARIADB.format(logs=run.logs)
                    + up_in(run, tmp_path, "first", DEMO, "slurm", ["slurm_dbd"], "ctl01", DBD_PLAY, {})
                    + check_login("login1", 1)
                    + up_in(run, tmp_path, "again", DEMO, "slurm", ["slurm_dbd"], "ctl01", DBD_PLAY, {})
                    + up_in(run, tmp_path, "rotated", DEMO, "slurm", ["slurm_dbd"], "ctl01", DBD_PLAY, rotate)
                    + check_login("login2", 2)
                    + STOP_MARIADB, timeout=600)
        log = run.log()
    finally:
        run.clean()
    for name in ("first", "again", "rotated"):
        assert "EXIT 0" in log[name], log[name][-3000:] + log.get("mariadbd", "")
    hosts = {n: json.loads((tmp_path / "runs" / n / "hosts.json").read_text())["ctl01"] for n in ("first", "again", "rotated")}
    assert hosts["first"]["changed"] == 1 and hosts["again"]["changed"] == 0 and hosts["rotated"]["changed"] == 1, hosts
    assert log["login1"].split() == ["slurm@localhost", "rc=0"], log["login1"]
    assert log["login2"].split() == ["slurm@localhost", "rc=0"], log["login2"]

    passwords = [(tmp_path / "secrets" / f"slurmdbd.db-password.{g}").read_text().strip() for g in (1, 2)]
    assert all(len(p) == 40 for p in passwords) and passwords[0] != passwords[1]
    assert watch.sweeps > 50, watch.sweeps
    for password in passwords:
        assert watch.holding(password) == []
        for name in ("first", "again", "rotated"):
            assert files_holding(tmp_path / "runs" / name, password) == []
            assert password not in log[name]


STANDIN_KUBEADM = r"""#!/bin/bash
# A stand-in for kubeadm 1.33 (tests/test_secrets.py): kubeadm's output, in its format, with the test's secrets.
echo "$*" >> /var/log/kubeadm-standin.calls
case "$*" in
  "init --config /etc/kubernetes/kubeadm.yaml --upload-certs")
    cat <<EOF
[init] Using Kubernetes version: v1.33.1
[preflight] Running pre-flight checks
[certs] Using certificateDir folder "/etc/kubernetes/pki"
[kubeconfig] Writing "admin.conf" kubeconfig file
[control-plane] Creating static Pod manifest for "kube-apiserver"
[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace
[upload-certs] Using certificate key:
@KEY1@
[mark-control-plane] Marking the node k8s-cp01 as control-plane by adding the labels: [node-role.kubernetes.io/control-plane]
[bootstrap-token] Using token: @TOKEN1@
[addons] Applied essential addon: CoreDNS

Your Kubernetes control-plane has initialized successfully!

You can now join any number of control-plane nodes running the following command on each as root:

  kubeadm join 10.40.0.21:6443 --token @TOKEN1@ \
	--discovery-token-ca-cert-hash sha256:@HASH@ \
	--control-plane --certificate-key @KEY1@

Please note that the certificate-key gives access to cluster sensitive data, keep it secret!

Then you can join any number of worker nodes by running the following on each as root:

kubeadm join 10.40.0.21:6443 --token @TOKEN1@ \
	--discovery-token-ca-cert-hash sha256:@HASH@
EOF
    echo "apiVersion: v1" > /etc/kubernetes/admin.conf ;;
  "token create --ttl 30m --print-join-command")
    echo "kubeadm join 10.40.0.21:6443 --token @TOKEN2@ --discovery-token-ca-cert-hash sha256:@HASH@ " ;;
  "init phase upload-certs --upload-certs --config /etc/kubernetes/kubeadm.yaml")
    echo '[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace'
    echo '[upload-certs] Using certificate key:'
    echo '@KEY2@' ;;
  "join --config /etc/kubernetes/kubeadm-join.yaml")
    if [ -e /etc/kubeadm-standin-fail ]; then
      # the worst a failing kubeadm could do: its error output quoting the token and the key
      echo "error execution phase preflight: token @TOKEN2@ and key @KEY2@ refused" >&2
      exit 1
    fi
    # The stand-in checks the join configuration with shell built-ins only: a grep with the token in its pattern
    # would put the token on a command line itself (the process watcher caught exactly that, now and then).
    while IFS= read -r line; do
      case "$line" in
        *'token: "@TOKEN2@"') echo "join: token ok" >> /var/log/kubeadm-standin.calls ;;      # JSON strings, as the
        *'certificateKey: "@KEY2@"') echo "join: key ok" >> /var/log/kubeadm-standin.calls ;;  # role writes them
      esac
    done < /etc/kubernetes/kubeadm-join.yaml
    echo "apiVersion: v1" > /etc/kubernetes/kubelet.conf
    echo "This node has joined the cluster and a new control plane instance was created" ;;
  *) echo "kubeadm stand-in: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""

K8S_PLAY = """\
- name: The kubernetes phase's kubeadm init and join on riga-infer's control planes
  hosts: k8s_control_plane
  gather_facts: false
  tasks:
    - name: kubeadm init and join
      ansible.builtin.include_role:
        name: kubernetes
        tasks_from: bootstrap
      vars:
        _kubernetes_kubeadm_version: {stdout: v1.33.1}
"""


def test_kubeadms_token_and_certificate_key_are_in_no_run_dir_and_on_no_command_line(tmp_path):
    from chroots import RoleRun

    def token() -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(secrets.choice(alphabet) for _ in range(6)) + "." + "".join(secrets.choice(alphabet) for _ in range(16))

    values = {"TOKEN1": token(), "TOKEN2": token(), "KEY1": secrets.token_hex(32), "KEY2": secrets.token_hex(32)}
    script = STANDIN_KUBEADM.replace("@HASH@", secrets.token_hex(32))
    for name, value in values.items():
        script = script.replace(f"@{name}@", value)
    standin = tmp_path / "kubeadm"
    standin.write_text(script)
    run = RoleRun(tmp_path, {}, "")
    (tmp_path / "runs").mkdir()
    both = "k8s-cp01,k8s-cp02"
    try:
        with ProcessWatch() as watch:
            run.run(f'install -m 0755 {standin} "$R/usr/bin/kubeadm"\n'
                    + up_in(run, tmp_path, "bootstrap", RIGA, "kubernetes", ["k8s_control_plane"], both, K8S_PLAY, {})
                    + 'rm "$R/etc/kubernetes/kubelet.conf"; touch "$R/etc/kubeadm-standin-fail"\n'
                    + up_in(run, tmp_path, "failed-join", RIGA, "kubernetes", ["k8s_control_plane"], both, K8S_PLAY, {})
                    + run.chroot("calls", "cat /var/log/kubeadm-standin.calls") + run.chroot("files", "ls /etc/kubernetes"))
        log = run.log()
    finally:
        run.clean()

    assert "EXIT 0" in log["bootstrap"], log["bootstrap"][-3000:]
    calls = log["calls"].splitlines()
    assert calls[:6] == ["init --config /etc/kubernetes/kubeadm.yaml --upload-certs",
                         "token create --ttl 30m --print-join-command",
                         "init phase upload-certs --upload-certs --config /etc/kubernetes/kubeadm.yaml",
                         "join --config /etc/kubernetes/kubeadm-join.yaml", "join: token ok", "join: key ok"], calls
    assert "kubeadm-join.yaml" not in log["files"]        # removed after the join, and after the failed one

    assert "EXIT 1" in log["failed-join"], log["failed-join"][-3000:]
    failed = json.loads((tmp_path / "runs" / "failed-join" / "hosts.json").read_text())["k8s-cp02"]
    assert failed["status"] == "failed" and "rc 1" in failed["message"], failed
    assert "error execution phase preflight: token <masked> and key <masked> refused" in failed["message"], failed

    assert watch.sweeps > 50, watch.sweeps
    for name, value in values.items():
        assert watch.holding(value) == [], name
        for run_name in ("bootstrap", "failed-join"):
            assert files_holding(tmp_path / "runs" / run_name, value) == [], name
            assert value not in log[run_name], name
