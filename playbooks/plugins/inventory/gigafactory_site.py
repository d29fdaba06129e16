# An Ansible inventory plugin that reads a gigafactory site file directly:
# groups per pool and per role, each host's planned addresses, rack and
# node-type facts as host variables. No generated inventory to drift.
from __future__ import annotations

DOCUMENTATION = r"""
name: gigafactory_site
short_description: A gigafactory site file (inventories/<site>/site.yml) as inventory
description:
  - Validates the site file and computes its plan with the gigafactory package,
    then adds one group per pool (C(pool_<name>)), per node type (C(type_<name>)) and
    per role (C(slurm_controller), C(slurm_dbd), C(slurm_login), C(slurm_compute),
    C(slurm), C(subnet_manager), C(rdma), C(gpu), C(k8s_control_plane),
    C(k8s_worker), C(nfs_server), C(execution), ...).
  - The inventory is the one gigafactory builds (infra.render.inventory.site_inventory), handed to Ansible as it is.
  - Host variables are prefixed C(gf_); C(ansible_host) is the planned management address; C(ansible_user) (every host)
    is C(provisioning.user).
  - The C(slurm) group carries C(gf_slurm_files) (the rendered slurm.conf, gres.conf, cgroup.conf, topology.conf by name),
    C(gf_slurm) (cluster, controllers, accounting host, state save location, containers) and C(gf_slurm_tenants).
  - Each Kubernetes cluster's group (C(k8s_<cluster>)) carries C(gf_kubernetes) (version, control plane, API endpoint, pod and
    service CIDRs).
  - The C(execution) group (provisioning.execution's hosts of the site) carries C(gf_execution) (the virtualenv and project
    directory the execution_host role installs, and the Python packages to pin there at the controller's versions).
  - The C(boot_server) group (provisioning.images.server) carries C(gf_boot) (the server's management address, the
    management network, proxy_dhcp, and each host with a declared MAC, with its name, MAC, address and node type).
  - An invalid site file ends the command with every problem listed and exit 2; every other failure (a file that
    cannot be read, a bug) ends it with the plugin's message and exit 2 or 1, never a fallback to the next plugin.
options: {}
"""

import os
import re
import sys

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.utils.display import Display


EXIT_INVALID, EXIT_FAILED = 2, 1


def fail(message, code):
    """End the command with ``message``. Ansible catches every exception an inventory plugin raises and tries the next
    plugin (yaml), which reads a site file as an empty inventory and exits 0: a partial inventory, silently."""
    Display().error(f"gigafactory_site: {message}", wrap_text=False)
    sys.exit(code)


class InventoryModule(BaseInventoryPlugin):
    NAME = "gigafactory_site"

    def verify_file(self, path):
        """Site files: named site.yml (readable or not: then parse() says why), or YAML whose top level declares both
        site: and pools:."""
        if os.path.basename(path) in ("site.yml", "site.yaml") and os.path.lexists(path):
            return True
        if not super().verify_file(path):
            return False
        if not path.endswith((".yml", ".yaml")) and os.path.splitext(path)[1]:
            return False
        try:
            with open(path, encoding="utf-8") as handle:
                head = handle.read(65536)
        except (OSError, UnicodeDecodeError):
            return False
        return bool(re.search(r"^site:", head, re.M) and re.search(r"^pools:", head, re.M))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        try:
            self._parse(inventory, path)
        except AnsibleParserError as err:
            fail(str(err), EXIT_FAILED)
        except OSError as err:
            fail(f"{path}: cannot be read: {err.strerror or err}", EXIT_INVALID)
        except Exception as err:  # noqa: BLE001 - any failure ends the command (see fail), named, never a traceback
            fail(f"{path}: {type(err).__name__}: {err} (a bug in gigafactory; please report it with the site file)",
                 EXIT_FAILED)

    def _parse(self, inventory, path):
        try:
            from infra.plan import build_plan
            from infra.runner.execution import controller_inventory
            from infra.site import SiteInvalid, load_site
        except ImportError as err:
            raise AnsibleParserError(f"gigafactory_site needs the gigafactory package in Ansible's Python: {err}") from err
        try:
            site = load_site(path)
            plan = build_plan(site, path)
        except SiteInvalid as err:
            fail(str(err), EXIT_INVALID)
        everyone = controller_inventory(site, plan)["all"]
        for key, value in everyone["vars"].items():
            inventory.set_variable("all", key, value)
        for name, variables in everyone["hosts"].items():
            inventory.add_host(name)
            for key, value in variables.items():
                inventory.set_variable(name, key, value)
        for group, child in everyone["children"].items():
            inventory.add_group(group)
            for name in child["hosts"]:
                inventory.add_child(group, name)
            for key, value in child.get("vars", {}).items():
                inventory.set_variable(group, key, value)
