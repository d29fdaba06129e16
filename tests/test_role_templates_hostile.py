"""Defence in depth in the roles: each template that inserts a site value, rendered by ansible.builtin.template on this
machine with hostile values put straight into its variables (bypassing the site model), either refuses, naming the
value, and writes nothing, or writes a file that cannot gain a line or a command. The Soft-RoCE unit's ExecStart is
then run the way systemd would run it, against a stand-in `rdma`, to show the interface reaches the shell as data."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, bin_path

ROLES = ROOT / "playbooks" / "roles"
RAIL = {"rail": 0, "interface": "enp0s5", "cidr": "10.50.0.0/19"}
FABRIC = {"kind": "ethernet", "rate": "100g", "ip_mtu": None, "ip_mode": None}
MOUNT = {"slurm_controller_state_server": "db01", "slurm_controller_state_export_path": "/srv/slurmctld-state",
         "slurm_controller_state_save_location": "/var/spool/slurmctld", "slurm_controller_mount_options": "rw,hard,_netdev"}
FLEXIBLE = {"slurm_flexible_program": "/usr/local/sbin/gigafactory-flexible",
            "slurm_flexible_config_file": "/etc/gigafactory/flexible.json",
            "slurm_flexible_events": "/var/log/gigafactory/flexible-events.jsonl"}
REMEDIATION = {"remediation_program": "/usr/local/sbin/gigafactory-remediate",
               "remediation_config_file": "/etc/gigafactory/remediation.json", "remediation_user": "slurm",
               "remediation_backend": "slurm"}
SOURCES = {"base_apt_debian_mirror": "http://10.40.0.5/debian", "_base_suite": "trixie", "base_apt_components": ["main"],
           "_base_apt_debian_signed_by": "/usr/share/keyrings/debian-archive-keyring.gpg", "base_apt_security_updates": True,
           "base_apt_security_mirror": "http://10.40.0.5/debian-security",
           "_base_apt_security_signed_by": "/usr/share/keyrings/debian-archive-keyring.gpg"}
CHRONY = {"base_ntp_servers": ["ntp01"], "_base_serves_time": False, "base_networks": {"management": {"cidr": "10.40.0.0/16"}}}
NETWORK = {"item": {"key": "management", "value": {"cidr": "10.40.0.0/16", "interface": "enp0s3", "mtu": 1500}},
           "base_addresses": {"management": "10.40.0.1/16"}}
PIN = {"nvidia_driver_branch": "570", "nvidia_driver_flavor": "open", "nvidia_driver_source": "repository"}
KUBEADM = {"kubernetes_version": "1.33", "kubernetes_release": "v1.33.4", "kubernetes_api_port": 6443, "kubernetes_image_repository": "",
           "kubernetes_name": "riga: {imageRepository: evil} # x", "kubernetes_node_address": "10.40.3.1\" ,x: [1]",
           "kubernetes_api_endpoint": "10.40.3.1", "kubernetes_pod_cidr": "10.112.0.0/12\n---", "kubernetes_service_cidr": "10.96.0.0/16"}
BOOT_HOST = {"name": "node01", "mac": "52:54:00:aa:00:01", "address": "10.40.1.1", "node_type": "vm-compute"}
BOOT = {"boot_server_plan": {"server": "10.40.0.5", "network": "10.40.0.0", "netmask": "255.255.0.0", "proxy_dhcp": False,
                        "hosts": [BOOT_HOST]},
        "boot_server_tftp_root": "/srv/gigafactory/tftp", "boot_server_http_root": "/srv/gigafactory/http",
        "boot_server_dhcp_lease": "12h"}

RESOLVED = {**RAIL, "pci": "0010:03:00.0", "device": "mlx5_4", "interface": "ib4"}     # a rail named by its PCI address
PARTITION = {"name": "acme", "key": "0x8001", "default": False, "tenant": "acme", "index0": False, "limited": ["svc01"], "full": ["gpu0001"]}
GUIDS = {"svc01": ["0x0002c90300000001"], "gpu0001": ["0x0002c90300000002"]}


def partitions(guids: dict | None = None, **partition) -> dict:
    fabric = {"subnet_managers": ["ctl01"], "partitions": [dict(PARTITION, **partition)]}
    return {"_rdma_sm_fabrics": [{"key": "compute", "value": fabric}], "_rdma_sm_fabric": fabric,
            "_rdma_member_guids": guids or GUIDS}


OPENSM = {"_rdma_sm_fabrics": [{"key": "compute", "value": {}}], "_rdma_sm_fabric": {"subnet_managers": ["ctl01"]},
          "_rdma_sm_priority": 15, "rdma_opensm_config_dir": "/etc/opensm", "rdma_opensm_log_file": "/var/log/opensm.log"}
SLURMDBD = {"gf_site": "riga-1", "inventory_hostname": "db01", "slurm_dbd_database": "slurm_acct_db", "slurm_dbd_db_user": "slurm",
            "slurm_dbd_user": "slurm", "_slurm_dbd_password": "Zx81bQ"}
CUDA_SOURCE = {"nvidia_driver_repository": "http://10.40.0.5/cuda", "nvidia_driver_repository_suite": "/",
               "nvidia_driver_repository_signed_by": "/usr/share/keyrings/gigafactory-cuda.gpg"}
DOCA_SOURCE = {"rdma_doca_repository": "http://10.40.0.5/doca", "rdma_doca_suite": "/", "rdma_doca_signed_by": "/usr/share/keyrings/gigafactory-doca.gpg"}
GRUB = {"base_iommu_passthrough": True, "base_hugepages_2m": 1024}

BOOT_MENU = {"boot_server_plan": {"server": "10.40.0.5/evil"}}
KUBEADM_JOIN = {k: v for k, v in KUBEADM.items() if k != "kubernetes_name"} | {
    "kubernetes_join_token": "abcdef.0123456789abcdef", "kubernetes_join_ca_hash": "sha256:00", "kubernetes_certificate_key": ""}
SITE_SOURCE = {"site_repository_key_name": "cuda", "site_repository_key_uris": "http://10.40.0.5/cuda", "site_repository_key_suites": "/",
               "site_repository_key_components": [], "site_repository_key_signed_by": "/usr/share/keyrings/gigafactory-cuda.gpg"}
# Templates that print values but have no hostile case here, and why.
NO_CASE = {"cuda/templates/cuda.sh.j2": "tests/test_cuda_role.py runs it in a login shell with shell text in a CUDA version",
           "node_health/templates/health-expect.json.j2": "the whole file is one value through to_nice_json"}


def boot(**host) -> dict:
    return dict(BOOT, boot_server_plan=dict(BOOT["boot_server_plan"], hosts=[dict(BOOT_HOST, **host)]))


# A name the kernel accepts for an interface (no '/', ':' or blank) and a shell would run as commands.
SHELL_IFACE = "e;touch${IFS}pwned;$(touch${IFS}pwned2)`touch${IFS}pwned3`"

# name: (template under playbooks/roles, its variables, None if it must render, else what the refusal says)
CASES = {
    "rxe ordinary": ("rdma/templates/gigafactory-rxe.service.j2", {"item": [RAIL, "10.50.0.1/19"], "rdma_fabric_name": "compute"}, None),
    "rxe shell metacharacters": ("rdma/templates/gigafactory-rxe.service.j2",
                                 {"item": [dict(RAIL, interface=SHELL_IFACE), "10.50.0.1/19"], "rdma_fabric_name": "compute"}, None),
    "rxe newline in the interface": ("rdma/templates/gigafactory-rxe.service.j2",
                                     {"item": [dict(RAIL, interface="eth0\nExecStartPre=/bin/touch /pwned"), "10.50.0.1/19"],
                                      "rdma_fabric_name": "compute"}, "U+000A"),
    "rxe blank in the interface": ("rdma/templates/gigafactory-rxe.service.j2",
                                   {"item": [dict(RAIL, interface="eth0 /bin/touch"), "10.50.0.1/19"], "rdma_fabric_name": "compute"},
                                   "rail interface 'eth0 /bin/touch' holds ' '"),
    "rxe specifier in the interface": ("rdma/templates/gigafactory-rxe.service.j2",
                                       {"item": [dict(RAIL, interface="eth%h"), "10.50.0.1/19"], "rdma_fabric_name": "compute"},
                                       "a systemd specifier"),
    "rxe newline in the fabric name": ("rdma/templates/gigafactory-rxe.service.j2",
                                       {"item": [RAIL, "10.50.0.1/19"], "rdma_fabric_name": "compute\nExecStartPre=/bin/true"}, "U+000A"),
    "rail.network ordinary": ("rdma/templates/rail.network.j2",
                              {"item": [RAIL, "10.50.0.1/19"], "rdma_fabric_name": "compute", "rdma_fabric": FABRIC}, None),
    "rail.network newline in the interface": ("rdma/templates/rail.network.j2",
                                              {"item": [dict(RAIL, interface="eth0\n[Route]"), "10.50.0.1/19"],
                                               "rdma_fabric_name": "compute", "rdma_fabric": FABRIC}, "U+000A"),
    "rail.network blank in the address": ("rdma/templates/rail.network.j2",
                                          {"item": [RAIL, "10.50.0.1/19 DNS=1.1.1.1"], "rdma_fabric_name": "compute", "rdma_fabric": FABRIC},
                                          "rail address"),
    "rail.network device by PCI address": ("rdma/templates/rail.network.j2",
                                           {"item": [RESOLVED, "10.50.0.1/19"], "rdma_fabric_name": "compute", "rdma_fabric": FABRIC}, None),
    "rail.network newline in the RDMA device": ("rdma/templates/rail.network.j2",
                                                {"item": [dict(RESOLVED, device="mlx5_0\n[Route]"), "10.50.0.1/19"],
                                                 "rdma_fabric_name": "compute", "rdma_fabric": FABRIC}, "U+000A"),
    "rails ordinary": ("rdma/templates/rails.j2", {"_rdma_rails": [[RESOLVED, "10.50.0.1/19"]], "rdma_fabric_name": "compute"}, None),
    "rails blank in the interface": ("rdma/templates/rails.j2", {"_rdma_rails": [[dict(RESOLVED, interface="ib0 mlx5_9"), "10.50.0.1/19"]],
                                                                  "rdma_fabric_name": "compute"}, "rail interface 'ib0 mlx5_9' holds ' '"),
    "mount ordinary": ("slurm_controller/templates/state.mount.j2", MOUNT, None),
    "mount newline in StateSaveLocation": ("slurm_controller/templates/state.mount.j2",
                                           dict(MOUNT, slurm_controller_state_save_location="/var/x\n[Service]\nExecStartPre=/bin/true"),
                                           "U+000A"),
    "mount specifier in StateSaveLocation": ("slurm_controller/templates/state.mount.j2",
                                             dict(MOUNT, slurm_controller_state_save_location="/var/%h"), "a systemd specifier"),
    "mount continuation in the options": ("slurm_controller/templates/state.mount.j2",
                                          dict(MOUNT, slurm_controller_mount_options="rw\\"), "holds '\\\\'"),
    "override newline in StateSaveLocation": ("slurm_controller/templates/slurmctld-override.conf.j2",
                                              dict(MOUNT, slurm_controller_state_save_location="/var/x\nExecStartPre=/bin/true"), "U+000A"),
    "remediation unit ordinary": ("remediation/templates/gigafactory-remediate.service.j2", REMEDIATION, None),
    "remediation unit newline in the configuration's path": (
        "remediation/templates/gigafactory-remediate.service.j2",
        dict(REMEDIATION, remediation_config_file="/etc/x.json\nExecStartPre=/bin/true"), "U+000A"),
    "remediation unit newline in the user": ("remediation/templates/gigafactory-remediate.service.j2",
                                             dict(REMEDIATION, remediation_user="slurm\nExecStartPre=/bin/true"), "U+000A"),
    "remediation unit specifier in the program's path": ("remediation/templates/gigafactory-remediate.service.j2",
                                                         dict(REMEDIATION, remediation_program="/usr/%h"), "a systemd specifier"),
    "debian sources ordinary": ("base/templates/debian.sources.j2", SOURCES, None),
    "debian sources newline in the mirror": ("base/templates/debian.sources.j2",
                                             dict(SOURCES, base_apt_debian_mirror="http://10.40.0.5/debian\nTrusted: yes"), "U+000A"),
    "debian sources second URI": ("base/templates/debian.sources.j2",
                                  dict(SOURCES, base_apt_debian_mirror="http://10.40.0.5/debian http://evil.example/debian"),
                                  "repositories.debian"),
    "cuda sources newline in the mirror": ("nvidia_driver/templates/cuda.sources.j2",
                                           {"nvidia_driver_repository": "http://10.40.0.5/cuda\nTrusted: yes", "nvidia_driver_repository_suite": "/",
                                            "nvidia_driver_repository_signed_by": "/usr/share/keyrings/gigafactory-cuda.gpg"}, "U+000A"),
    "doca sources newline in the mirror": ("rdma/templates/doca.sources.j2",
                                           {"rdma_doca_repository": "http://10.40.0.5/doca\nTrusted: yes", "rdma_doca_suite": "/",
                                            "rdma_doca_signed_by": "/usr/share/keyrings/gigafactory-doca.gpg"}, "U+000A"),
    "network ordinary": ("base/templates/network.j2", NETWORK, None),
    "network newline in the interface": ("base/templates/network.j2",
                                         dict(NETWORK, item={"key": "management", "value": dict(NETWORK["item"]["value"], interface="eth0\n[Route]")}),
                                         "U+000A"),
    "network blank in the address": ("base/templates/network.j2", dict(NETWORK, base_addresses={"management": "10.40.0.1/16 Gateway=1.1.1.1"}),
                                     "network address"),
    "hosts newline in a name": ("base/templates/hosts.j2", {"base_etc_hosts": [["10.40.0.1", "ctl01\n6.6.6.6\tmirror"]]}, "U+000A"),
    "driver pin ordinary": ("nvidia_driver/templates/preferences.j2", PIN, None),
    "driver pin newline in the branch": ("nvidia_driver/templates/preferences.j2", dict(PIN, nvidia_driver_branch="570\nPin-Priority: -1"), "U+000A"),
    "kubeadm YAML syntax in site values": ("kubernetes/templates/kubeadm.yaml.j2", KUBEADM, None),
    "kubeadm newline in the cluster name": ("kubernetes/templates/kubeadm.yaml.j2", dict(KUBEADM, kubernetes_name="riga\nimageRepository: evil"),
                                            "U+000A"),
    "dnsmasq ordinary": ("boot_server/templates/gigafactory-boot.conf.j2", BOOT, None),
    "dnsmasq newline in a host name": ("boot_server/templates/gigafactory-boot.conf.j2",
                                       boot(name="node01\ndhcp-option=6,6.6.6.6"), "U+000A"),
    "dnsmasq comma in a MAC": ("boot_server/templates/gigafactory-boot.conf.j2", boot(mac="52:54:00:aa:00:01,set:evil"),
                               "MAC of node01"),
    "dnsmasq blank in an address": ("boot_server/templates/gigafactory-boot.conf.j2", boot(address="10.40.1.1 ignore"),
                                    "address of node01"),
    "dnsmasq comment in the server": ("boot_server/templates/gigafactory-boot.conf.j2",
                                      dict(BOOT, boot_server_plan=dict(BOOT["boot_server_plan"], server="10.40.0.5#x")), "boot server address"),
    "ipxe script ordinary": ("boot_server/templates/host.ipxe.j2", {"item": BOOT_HOST, **BOOT}, None),
    "ipxe script setting in the node type": ("boot_server/templates/host.ipxe.j2",
                                             {"item": dict(BOOT_HOST, node_type="x${evil}"), **BOOT}, "node type of node01"),
    "ipxe script path in the node type": ("boot_server/templates/host.ipxe.j2",
                                          {"item": dict(BOOT_HOST, node_type="../../etc"), **BOOT}, "node type of node01"),
    "ipxe script newline in a host name": ("boot_server/templates/host.ipxe.j2",
                                           {"item": dict(BOOT_HOST, name="node01\nshell"), **BOOT}, "U+000A"),
    "nginx brace in the root": ("boot_server/templates/nginx-boot.conf.j2", dict(BOOT, boot_server_http_root="/srv/x;}server{"),
                                "HTTP root"),
    "chrony ordinary": ("base/templates/chrony.conf.j2", CHRONY, None),
    "chrony newline in a server": ("base/templates/chrony.conf.j2", dict(CHRONY, base_ntp_servers=["ntp01 iburst\nallow all"]), "U+000A"),
    "chrony blank in a server": ("base/templates/chrony.conf.j2", dict(CHRONY, base_ntp_servers=["ntp01 key 1"]), "NTP server"),
    "partitions ordinary": ("rdma/templates/partitions.conf.j2", partitions(), None),
    "partitions comma in a partition name adds a flag": ("rdma/templates/partitions.conf.j2", partitions(name="acme, ipoib, defmember=full"),
                                                         "partition name 'acme,"),
    "partitions equals in a key": ("rdma/templates/partitions.conf.j2", partitions(key="0x8001=full"), "partition key of acme"),
    "partitions semicolon in a GUID ends the partition": ("rdma/templates/partitions.conf.j2",
                                                         partitions(guids=dict(GUIDS, gpu0001=["0x1=full; evil=0x8002 : ALL=full"])),
                                                         "port GUID of gpu0001"),
    "partitions newline in a tenant comment": ("rdma/templates/partitions.conf.j2", partitions(tenant="acme\nevil=0x8002 : ALL=full ;"), "U+000A"),
    "opensm ordinary": ("rdma/templates/opensm.conf.j2", OPENSM, None),
    "opensm a word as priority": ("rdma/templates/opensm.conf.j2", dict(OPENSM, _rdma_sm_priority="15\nno_partition_enforcement TRUE"),
                                  "subnet manager priority"),
    "opensm a priority out of range": ("rdma/templates/opensm.conf.j2", dict(OPENSM, _rdma_sm_priority=16), "outside 0..15"),
    "cuda sources ordinary": ("nvidia_driver/templates/cuda.sources.j2", CUDA_SOURCE, None),
    "cuda sources a key file and its fingerprint": ("nvidia_driver/templates/cuda.sources.j2",
                                                   dict(CUDA_SOURCE, nvidia_driver_repository_signed_by="/k.gpg " + "A" * 40), None),
    "cuda sources a word in Signed-By": ("nvidia_driver/templates/cuda.sources.j2",
                                        dict(CUDA_SOURCE, nvidia_driver_repository_signed_by="/k.gpg Trusted=yes"),
                                        "neither a key file's absolute path nor a fingerprint"),
    "cuda sources newline in Signed-By": ("nvidia_driver/templates/cuda.sources.j2",
                                         dict(CUDA_SOURCE, nvidia_driver_repository_signed_by="/k.gpg\nTrusted: yes"), "U+000A"),
    "doca sources ordinary": ("rdma/templates/doca.sources.j2", DOCA_SOURCE, None),
    "doca sources newline in Signed-By": ("rdma/templates/doca.sources.j2", dict(DOCA_SOURCE, rdma_doca_signed_by="/k.gpg\nTrusted: yes"),
                                         "U+000A"),
    "slurmdbd ordinary": ("slurm_dbd/templates/slurmdbd.conf.j2", SLURMDBD, None),
    "slurmdbd blank in the database": ("slurm_dbd/templates/slurmdbd.conf.j2", dict(SLURMDBD, slurm_dbd_database="acct StorageHost=evil"),
                                       "slurmdbd database"),
    "slurmdbd newline in the user": ("slurm_dbd/templates/slurmdbd.conf.j2", dict(SLURMDBD, slurm_dbd_db_user="slurm\nStorageHost=evil"),
                                     "U+000A"),
    "slurmdbd a password with a comment is refused unseen": ("slurm_dbd/templates/slurmdbd.conf.j2",
                                                             dict(SLURMDBD, _slurm_dbd_password="Zx81#bQ"), "(not shown: a secret)"),
    "grub ordinary": ("base/templates/grub.cfg.j2", GRUB, None),
    "grub a command line in the huge pages": ("base/templates/grub.cfg.j2", dict(GRUB, base_hugepages_2m='8 init=/bin/sh"'),
                                              "node_types.hugepages_2m"),
    "grub shell in the huge pages": ("base/templates/grub.cfg.j2", dict(GRUB, base_hugepages_2m="$(reboot)"), "is not an integer"),
    "sysctl newline in a value": ("base/templates/sysctl.conf.j2", {"_base_sysctls": {"vm.nr_hugepages": "8\nkernel.modules_disabled = 1"}},
                                  "U+000A"),
    "sysctl a second setting in a key": ("base/templates/sysctl.conf.j2", {"_base_sysctls": {"kernel.x = 1 #": 1}}, "sysctl key"),
    "mariadb a word as the lock timeout": ("slurm_dbd/templates/mariadb.cnf.j2",
                                           {"slurm_dbd_innodb_buffer_pool_size": "128M", "slurm_dbd_innodb_lock_wait_timeout": "900 skip-grant-tables"},
                                           "innodb_lock_wait_timeout"),
    "systemd limits newline in memlock": ("base/templates/systemd-limits.conf.j2", {"base_memlock": "1\n[Manager]"}, "U+000A"),
    "modules blank in a module": ("rdma/templates/modules-load.conf.j2", {"_rdma_modules": ["ib_uverbs evil"]}, "kernel module"),
    "ipxe menu path in the server": ("boot_server/templates/menu.ipxe.j2", BOOT_MENU, "boot server address"),
    "containerd newline in the registry": ("kubernetes/templates/containerd-config.toml.j2",
                                           {"kubernetes_image_repository": "r\n[plugins.x]", "kubernetes_pause_version": "3.10"}, "U+000A"),
    "kubeadm join newline in the cluster name": ("kubernetes/templates/kubeadm-join.yaml.j2", dict(KUBEADM_JOIN, kubernetes_name="riga\nx: 1"),
                                                 "U+000A"),
    "kubernetes sysctl newline in a value": ("kubernetes/templates/sysctl.conf.j2", {"kubernetes_sysctls": {"net.ipv4.ip_forward": "1\nkernel.x = 1"}},
                                             "U+000A"),
    "imex config ordinary": ("nvidia_driver/templates/imex-config.cfg.j2", {"nvidia_driver_imex_config": {"SERVER_PORT": 50000, "BIND_INTERFACE_IP": ""}},
                             None),
    "imex config newline in a value": ("nvidia_driver/templates/imex-config.cfg.j2",
                                       {"nvidia_driver_imex_config": {"IMEX_NODE_CONFIG_FILE": "/x\nIMEX_ENABLE_AUTH_ENCRYPTION=0"}}, "U+000A"),
    "imex config equals in a key": ("nvidia_driver/templates/imex-config.cfg.j2", {"nvidia_driver_imex_config": {"LOG_LEVEL=0": 1}},
                                    "IMEX setting"),
    "peermem a word as the HCA count": ("nvidia_driver/templates/peermem.conf.j2", {"gf_hcas": "2\nblacklist nvidia"}, "HCA count"),
    "site sources newline in the repository name": ("site_repository_key/templates/site.sources.j2", dict(SITE_SOURCE, site_repository_key_name="x\ny"),
                                                    "U+000A"),
    "limits blank in memlock": ("base/templates/limits.conf.j2", {"base_memlock": "unlimited\n* hard nofile 1"}, "U+000A"),
    "signal agent a unit line in its interval": ("node_health/templates/gigafactory-node-signals.timer.j2",
                                                 {"node_health_signals_interval_s": "30s\nOnCalendar=minutely"}, "is not an integer"),
    "signal agent a second command in its program": ("node_health/templates/gigafactory-node-signals.service.j2",
                                                     {"node_health_program": "/usr/local/sbin/x; rm -rf /", "node_health_expect_file": "/e",
                                                      "node_health_signals_state": "/s"}, "node_health_program"),
    "flexible unit ordinary": ("slurm_flexible/templates/gigafactory-flexible.service.j2", FLEXIBLE, None),
    "flexible unit a second command in its events path": (
        "slurm_flexible/templates/gigafactory-flexible.service.j2",
        dict(FLEXIBLE, slurm_flexible_events="/var/log/x.jsonl\nExecStartPost=/bin/sh"), "U+000A"),
    "flexible unit specifier in the configuration's path": ("slurm_flexible/templates/gigafactory-flexible.service.j2",
                                                           dict(FLEXIBLE, slurm_flexible_config_file="/etc/%h.json"),
                                                           "a systemd specifier"),
    "gpu power unit a second command in its program": ("gpu_power/templates/gigafactory-gpu-power.service.j2",
                                                       {"gpu_power_program": "/usr/local/sbin/x\nExecStartPost=/bin/sh",
                                                        "gpu_power_file": "/e", "gpu_power_nvidia_smi": "nvidia-smi"}, "gpu_power_program"),
    "gpu power limit a key of its own": ("gpu_power/templates/gpu-power.json.j2",
                                         {"gpu_power_limit_w": '400, "other": 1'}, "is not an integer"),
}


def test_every_role_template_that_prints_a_value_has_a_hostile_case():
    templates = {str(t.relative_to(ROLES)) for t in ROLES.glob("*/templates/**/*.j2")
                 if "{{" in t.read_text().replace("{{ ansible_managed }}", "")}
    hostile = {src for src, _, refusal in CASES.values() if refusal is not None}
    assert sorted(templates - hostile - set(NO_CASE)) == []


def case_file(name: str) -> str:
    return name.replace(" ", "_")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, dict]:
    """Every case in one ansible-playbook run: a block per case, its refusal (if any) kept by the rescue."""
    out = tmp_path_factory.mktemp("templates")
    tasks = []
    for name, (src, variables, _) in CASES.items():
        tasks.append({
            "name": f"Case {name}",
            "block": [{"name": "Render", "ansible.builtin.template": {"src": str(ROLES / src), "dest": str(out / case_file(name)),
                                                                       "mode": "0644"}, "vars": variables}],
            "rescue": [{"name": "Keep the refusal",
                        "ansible.builtin.set_fact": {"refused": "{{ refused | combine({" + json.dumps(name) + ": ansible_failed_result.msg}) }}"}}],
        })
    tasks.append({"name": "The mount unit's name, as the role's vars/main.yml derives it",
                  "ansible.builtin.copy": {"content": "{{ _slurm_controller_mount_unit }}", "dest": str(out / "mount_unit"), "mode": "0644"},
                  "vars": {"slurm_controller_state_save_location": "/var/spool/slurm-state.d/ctl"}})
    tasks.append({"name": "Write the refusals", "ansible.builtin.copy": {"content": "{{ refused | to_json }}", "dest": str(out / "refused.json"),
                                                                         "mode": "0644"}})
    play = [{"name": "Templates with hostile values", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"refused": {}}, "vars_files": [str(ROLES / role / "vars" / "main.yml") for role in ("slurm_controller", "base")], "tasks": tasks}]
    (out / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    result = subprocess.run([bin_path("ansible-playbook"), "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
                             str(out / "play.yml")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out, json.loads((out / "refused.json").read_text())


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c[2] is not None])
def test_a_hostile_value_is_refused_naming_it_and_nothing_is_written(rendered, name):
    out, refused = rendered
    assert name in refused, f"{name}: rendered, not refused:\n{(out / case_file(name)).read_text()}"
    assert CASES[name][2] in refused[name]
    assert not (out / case_file(name)).exists()


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c[2] is None])
def test_an_ordinary_value_renders(rendered, name):
    out, refused = rendered
    assert name not in refused, refused.get(name)
    assert (out / case_file(name)).read_text().strip()


def test_the_mount_unit_is_named_as_systemd_escape_path_names_it(rendered):
    out, _ = rendered
    want = "var-spool-slurm\\x2dstate.d-ctl.mount"
    if shutil.which("systemd-escape"):
        want = subprocess.run(["systemd-escape", "--path", "--suffix=mount", "/var/spool/slurm-state.d/ctl"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert (out / "mount_unit").read_text() == want


def systemd_exec_argv(line: str) -> list[str]:
    """ExecStart='s words as systemd hands them to exec: quotes and C escapes removed, then '%%' and '$$' as '%' and '$'
    (this unit uses no other specifier or variable)."""
    words = shlex.split(line.split("=", 1)[1], posix=True)
    assert all("%" not in w.replace("%%", "") and "$" not in w.replace("$$", "") for w in words), words
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


def test_the_soft_roce_unit_hands_the_interface_to_the_shell_as_data(rendered, tmp_path):
    out, _ = rendered
    unit = (out / case_file("rxe shell metacharacters")).read_text()
    assert unit.count("\nExecStart=") == 1 and "\nExecStartPre" not in unit
    argv = systemd_exec_argv(next(line for line in unit.splitlines() if line.startswith("ExecStart=")))
    assert argv[0] == "/bin/sh" and argv[-1] == SHELL_IFACE
    assert "BindsTo=sys-subsystem-net-devices-e\\x3btouch\\x24\\x7bIFS" in unit          # the device unit's escaped name
    # Run it as systemd would, with a stand-in rdma that records its arguments and says no link exists yet.
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "rdma").write_text('#!/bin/sh\n[ "$2" = show ] && exit 1\nprintf "%s\\n" "$@" > "$RDMA_ARGS"\n')
    (stub / "rdma").chmod(0o755)
    work = tmp_path / "cwd"
    work.mkdir()
    env = {"PATH": f"{stub}:/usr/bin:/bin", "RDMA_ARGS": str(tmp_path / "args")}
    subprocess.run(argv, cwd=work, env=env, check=True, timeout=30)
    assert (tmp_path / "args").read_text().splitlines() == ["link", "add", "rxe0", "type", "rxe", "netdev", SHELL_IFACE]
    assert list(work.iterdir()) == []                                                   # nothing touched


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_parses_the_soft_roce_unit_with_shell_metacharacters_cleanly(rendered, tmp_path):
    out, _ = rendered
    unit = tmp_path / "gigafactory-rxe0.service"
    unit.write_text((out / case_file("rxe shell metacharacters")).read_text())
    said = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (said.stdout + said.stderr).splitlines() if "is not executable" not in line]   # no rdma here
    assert problems == [], problems


def test_kubeadm_yaml_keeps_each_site_value_one_scalar(rendered):
    out, _ = rendered
    docs = [d for d in yaml.safe_load_all((out / case_file("kubeadm YAML syntax in site values")).read_text()) if d]
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
    cluster = docs[1]
    assert cluster["clusterName"] == KUBEADM["kubernetes_name"] and "imageRepository" not in cluster
    assert cluster["networking"]["podSubnet"] == KUBEADM["kubernetes_pod_cidr"]
    assert docs[0]["localAPIEndpoint"]["advertiseAddress"] == KUBEADM["kubernetes_node_address"]
