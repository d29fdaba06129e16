"""The roles' install and configure parts (docs/images.md, "Roles: install and configure parts").

Statically: every role's tasks/main.yml is its one entry point and selects tasks/install.yml and tasks/configure.yml
through the gigafactory_parts filter (or says it has no such part); the filter's default and check; the install
part writes nothing of a host's identity, starts nothing, and notifies only handlers that are safe in a chroot.
For real, in a Debian 13 chroot: base (with site_repository_key), rdma (inbox), munge and slurm_compute (with
slurm_common) converged with gigafactory_part=install twice: the second run changes nothing (an image satisfies the
install part), and no host-identity file was written (hostname, /etc/hosts, Slurm's files, munge's key).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil

import pytest
import yaml

from conftest import DEMO, ROOT, site_data

ROLES = ROOT / "playbooks" / "roles"
FILTER = ROOT / "playbooks" / "plugins" / "filter" / "gigafactory_part.py"
PARTS = ("install", "configure")


def parts_filter():
    spec = importlib.util.spec_from_file_location("gigafactory_part_filter", FILTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tasks_in(node):
    """Every task mapping of a task list, blocks, rescues and always sections included."""
    for task in node or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from tasks_in(task.get(key))


def part_files(role: str, part: str) -> list[str]:
    """tasks/<part>.yml and the task files it imports or includes, transitively (within the role)."""
    seen, queue = [], [f"{part}.yml"]
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.append(name)
        for task in tasks_in(yaml.safe_load((ROLES / role / "tasks" / name).read_text())):
            for key in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
                target = task.get(key)
                if target:
                    target = target.replace("{{ rdma_stack }}", "*")
                    queue += sorted(p.name for p in (ROLES / role / "tasks").glob(target if target.endswith(".yml") else target + ".yml"))
    return seen


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir()))
def test_each_roles_main_selects_its_parts_with_gigafactory_part(role):
    main = (ROLES / role / "tasks" / "main.yml").read_text()
    tasks = yaml.safe_load(main)
    declared = [line for line in main.splitlines() if re.match(r"# No .*part", line)]
    for part in PARTS:
        selector = {"ansible.builtin.include_tasks": f"{part}.yml", "when": f"'{part}' in gigafactory_part | gigafactory_parts"}
        selects = [t for t in tasks if {k: t.get(k) for k in selector} == selector]
        if (ROLES / role / "tasks" / f"{part}.yml").exists():
            assert len(selects) == 1, f"{role}: main.yml does not include {part}.yml through the selector"
        else:
            assert not selects and any(part in line for line in declared), f"{role}: no {part}.yml and no '# No {part} part: why'"
    # Besides its parts, main.yml holds only checks and the import of a role that has parts of its own (slurm_common).
    for task in tasks:
        if "ansible.builtin.include_tasks" in task:
            continue
        if "ansible.builtin.import_role" in task:
            assert (ROLES / task["ansible.builtin.import_role"]["name"] / "tasks" / "install.yml").exists()
            continue
        assert "ansible.builtin.assert" in task, f"{role}: main.yml task outside its parts: {task.get('name')}"


def test_gigafactory_part_defaults_to_all_and_refuses_anything_else():
    from ansible.errors import AnsibleFilterError
    from jinja2 import Undefined

    parts = parts_filter().gigafactory_parts
    assert parts(Undefined(name="gigafactory_part")) == ["install", "configure"]
    assert parts("all") == ["install", "configure"]
    assert parts("install") == ["install"] and parts("configure") == ["configure"]
    for bad in ("Install", "both", "", ["install"]):
        with pytest.raises(AnsibleFilterError, match="gigafactory_part is .*: it is one of all, install, configure"):
            parts(bad)
    with pytest.raises(AnsibleFilterError, match="names 'typo', which is undefined"):
        parts(Undefined(name="typo"))


# What an install part never does: a host's name or addresses, a daemon started or restarted, a reboot, a wait on a
# port, a task run elsewhere, the secret store.
IDENTITY = re.compile(r"inventory_hostname|gf_addresses|gf_etc_hosts|gf_rails|base_hostname|base_addresses|_secrets_dir"
                      r"|ansible_hostname|ansible_default_ipv4|ansible_facts")
FORBIDDEN_MODULES = ("ansible.builtin.hostname", "ansible.builtin.reboot", "ansible.builtin.wait_for", "ansible.builtin.slurp")


def handlers():
    """{name or listen topic: [(role, handler)]} over every role."""
    found = {}
    for path in ROLES.glob("*/handlers/main.yml"):
        for handler in yaml.safe_load(path.read_text()) or []:
            topics = [handler["name"]] + ([handler["listen"]] if isinstance(handler.get("listen"), str) else handler.get("listen", []))
            for topic in topics:
                found.setdefault(topic, []).append((path.parts[-3], handler))
    return found


def chroot_safe(handler: dict) -> bool:
    """A handler an install run may notify: guarded to runs with a configure part, or harmless in a chroot."""
    if "'configure' in gigafactory_part | gigafactory_parts" in str(handler.get("when", "")):
        return True
    command = handler.get("ansible.builtin.command")
    return ("ansible.builtin.apt" in handler or "ansible.builtin.debug" in handler
            or (isinstance(command, str) and command.startswith("update-initramfs ")))


@pytest.mark.parametrize("role", sorted(p.parent.parent.name for p in ROLES.glob("*/tasks/install.yml")))
def test_the_install_part_touches_no_host_identity_and_starts_nothing(role):
    every = handlers()
    for name in part_files(role, "install"):
        for task in tasks_in(yaml.safe_load((ROLES / role / "tasks" / name).read_text())):
            where = f"{role}/tasks/{name}: {task.get('name')}"
            module_args = {k: v for k, v in task.items() if k.startswith("ansible.builtin.")}
            assert not IDENTITY.search(yaml.safe_dump(task)), f"{where} reads a host's identity"
            assert not any(m in task for m in FORBIDDEN_MODULES), where
            assert "delegate_to" not in task, where
            service = task.get("ansible.builtin.systemd_service") or {}
            assert service.get("state") in (None, "stopped"), f"{where} starts a service"
            assert not module_args.get("ansible.builtin.command", "").startswith(("modprobe", "sysctl", "swapoff")) \
                if isinstance(module_args.get("ansible.builtin.command"), str) else True, where
            for topic in [task["notify"]] if isinstance(task.get("notify"), str) else task.get("notify", []):
                assert every.get(topic), f"{where} notifies {topic!r}, which no handler answers"
                unsafe = [r for r, h in every[topic] if not chroot_safe(h)]
                assert not unsafe, f"{where} notifies {topic!r}: {unsafe}'s handler acts on a running system in an image build"


# The kernel a role builds or checks modules for, read directly: in an image build that is the builder's kernel.
RUNNING_KERNEL = re.compile(r"\buname\b|ansible_kernel\b|ansible_facts\.kernel\b|ansible_facts\[.kernel.\]")
TARGET_KERNEL = "gigafactory_kernel | default(ansible_facts.kernel)"


@pytest.mark.parametrize("role", sorted(p.parent.parent.name for p in ROLES.glob("*/tasks/install.yml")))
def test_the_install_part_names_the_kernel_through_gigafactory_kernel(role):
    """No install task reads the running kernel (uname, ansible_kernel); a role's variable for it defaults
    gigafactory_kernel, which the image builder sets to the image's kernel."""
    for name in part_files(role, "install"):
        text = (ROLES / role / "tasks" / name).read_text()
        found = RUNNING_KERNEL.search(text)
        assert not found, f"{role}/tasks/{name} reads the running kernel ({found.group(0)!r}): use gigafactory_kernel"
    for name in ("vars/main.yml", "defaults/main.yml"):
        path = ROLES / role / name
        for var, value in ((yaml.safe_load(path.read_text()) or {}).items() if path.is_file() else ()):
            if isinstance(value, str) and RUNNING_KERNEL.search(value):
                assert TARGET_KERNEL in value.replace("  ", " "), f"{role}/{name}: {var} reads the running kernel"


def test_the_driver_headers_dkms_build_and_module_check_all_name_the_target_kernel():
    tasks = {t.get("name"): yaml.safe_dump(t) for name in part_files("nvidia_driver", "install")
             for t in tasks_in(yaml.safe_load((ROLES / "nvidia_driver" / "tasks" / name).read_text()))}
    variables = yaml.safe_load((ROLES / "nvidia_driver" / "vars" / "main.yml").read_text())
    assert variables["_nvidia_driver_kernel"] == "{{ " + TARGET_KERNEL + " }}"
    for task in ("Kernel headers for the target kernel (the DKMS build needs them)",
                 "Build the module for the target kernel (DKMS)", "The module is built for the target kernel"):
        assert "{{ _nvidia_driver_kernel" in tasks[task], task
    kernel = "{{ _nvidia_driver_kernel | one_word('kernel release') }}"     # argv words, the release checked as one
    argv = {name: yaml.safe_load(text)["ansible.builtin.command"]["argv"] for name, text in tasks.items()
            if name in ("Build the module for the target kernel (DKMS)", "The module is built for the target kernel")}
    assert argv["Build the module for the target kernel (DKMS)"][:4] == ["dkms", "autoinstall", "-k", kernel]
    assert argv["The module is built for the target kernel"][:3] == ["modinfo", "-k", kernel]


# ---- for real, in a chroot --------------------------------------------------------------------------------------

HOST = "node01"
PLAY = """
- name: The install parts of a demo compute node's roles
  hosts: node01
  connection: local
  gather_facts: false
  tasks:
    - name: Every role the node runs
      ansible.builtin.include_role:
        name: "{{ item }}"
      loop: [base, rdma, munge, slurm_compute]
"""

# Files of a host's identity the roles' configure parts write; none may exist after an install run.
IDENTITY_FILES = ["/etc/slurm/slurm.conf", "/etc/slurm/gres.conf", "/etc/munge/munge.key", "/etc/modules-load.d/gigafactory-rdma.conf",
                  "/etc/systemd/network/20-gigafactory-management.network", "/etc/systemd/system/gigafactory-rxe0.service"]
# The hostname and /etc/hosts as the chroot had them, and no file of the role's in chrony's (the package's own is fine).
STATE = "cat /etc/hostname; md5sum /etc/hosts; ls -d {files} 2>/dev/null; grep -rl 'Ansible managed' /etc/chrony 2>/dev/null; true"



@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("debootstrap", "unshare", "apt-cacher-ng")),
                    reason="needs root, debootstrap, unshare and apt-cacher-ng")
def test_an_install_run_twice_changes_nothing_the_second_time_and_writes_no_host_identity(tmp_path, mirror_cache):
    from chroots import RoleRun
    site = site_data(DEMO)
    run = RoleRun(tmp_path, site, PLAY)
    # The site names a key file for its Debian mirror (site_repository_key copies it): Debian's own keyring.
    shutil.copy(run.base / "usr/share/keyrings/debian-archive-keyring.gpg", tmp_path / "debian.gpg")
    site["repositories"]["debian"] = {"url": mirror_cache, "signed_by": "debian.gpg"}
    run.site.write_text(yaml.safe_dump(site))
    install = f"-e gigafactory_part=install {run.play}"
    state = STATE.format(files=" ".join(IDENTITY_FILES))
    try:
        run.run(run.chroot("before", state)
                + run.converge("install1").replace(str(run.play), install)
                + run.converge("install2").replace(str(run.play), install)
                + run.chroot("after", state)
                + run.chroot("installed", "dpkg-query -W -f '${Package} ${Status}\\n' slurmd munge rdma-core chrony | grep -c ' installed$'")
                + run.chroot("keys", "ls /etc/apt/keyrings"), timeout=1800)
        log = run.log()
    finally:
        run.clean()
    assert run.changed("install1", HOST) > 0
    assert run.changed("install2", HOST) == 0, log["install2.log"][-4000:]
    assert log["after"] == log["before"], (log["before"], log["after"])     # hostname, hosts and no identity file
    assert len(log["before"].splitlines()) == 2, log["before"]                 # the hostname and /etc/hosts' digest only
    assert log["installed"].strip() == "4", log["installed"]
    assert log["keys"].split() == ["gigafactory-debian.gpg"], log["keys"]


@pytest.mark.parametrize("role", sorted(p.parent.parent.name for p in ROLES.glob("*/tasks/install.yml")))
def test_the_install_part_reads_no_variable_the_image_key_leaves_out(role):
    """The image's cache key hashes every inventory variable its host receives but host lists
    (infra/image/build.py CONFIGURE_VARIABLES): an install part that read one would be served stale from the cache."""
    from infra.image.cache import CONFIGURE_VARIABLES
    names = set(CONFIGURE_VARIABLES)
    for name in ("vars/main.yml", "defaults/main.yml"):     # a role's own names for them
        path = ROLES / role / name
        for var, value in ((yaml.safe_load(path.read_text()) or {}).items() if path.is_file() else ()):
            if any(v in yaml.safe_dump(value) for v in CONFIGURE_VARIABLES):
                names.add(var)
    pattern = re.compile(r"\b(" + "|".join(sorted(names)) + r")\b")
    for name in part_files(role, "install"):
        text = (ROLES / role / "tasks" / name).read_text()
        found = pattern.search(text)
        assert not found, f"{role}/tasks/{name} reads {found.group(0)}, which the image key leaves out"
        for template in re.findall(r"src:\s*([\w./-]+\.j2)", text):
            found = pattern.search((ROLES / role / "templates" / template).read_text())
            assert not found, f"{role}/templates/{template} (install part) reads {found.group(0)}, which the image key leaves out"
