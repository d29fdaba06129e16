"""The boot_server role's configure part rendered from a site's plan (the inventory plugin's gf_boot, the role's
defaults and templates, by ansible-playbook on this machine): Debian 13's dnsmasq accepts the configuration
(``dnsmasq --test`` in a cached chroot), each declared host gets its dhcp-host line and an iPXE script naming its node
type's bundle the way infra/image/boot.py reads it, and a host without a MAC gets neither."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chroots import cached_chroot, overlay_setup
from conftest import ROOT, bin_path

from infra.image import boot
from infra.image.chroot import Chroot

ROLE = ROOT / "playbooks" / "roles" / "boot_server"
MACS = {"node01": "52:54:00:AA:00:01", "node02": "52:54:00:aa:00:02"}


def site_file(tmp: Path, proxy: bool) -> Path:
    site = yaml.safe_load((ROOT / "inventories" / "demo" / "site.yml").read_text())
    site["provisioning"]["images"] = {"server": "ctl01", "proxy_dhcp": proxy}
    for pool in site["pools"]:
        if pool["name"] == "compute":
            pool["macs"] = dict(MACS)
    path = tmp / f"site-{'proxy' if proxy else 'static'}.yml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def render(tmp: Path, proxy: bool) -> Path:
    """The role's configure templates for the site's boot server, written under ``out``."""
    out = tmp / ("proxy" if proxy else "static")
    (out / "boot").mkdir(parents=True)
    play = [{"name": "The boot server's files", "hosts": "boot_server", "connection": "local", "gather_facts": False,
             "vars_files": [str(ROLE / "defaults" / "main.yml")], "tasks": [
                 {"name": "dnsmasq", "ansible.builtin.template": {
                     "src": str(ROLE / "templates" / "gigafactory-boot.conf.j2"), "dest": str(out / "dnsmasq.conf"), "mode": "0644"}},
                 {"name": "menu", "ansible.builtin.template": {
                     "src": str(ROLE / "templates" / "menu.ipxe.j2"), "dest": str(out / "boot" / "menu.ipxe"), "mode": "0644"}},
                 {"name": "hosts", "ansible.builtin.template": {
                     "src": str(ROLE / "templates" / "host.ipxe.j2"),
                     "dest": str(out / "boot") + "/{{ item.mac | replace(':', '-') }}.ipxe", "mode": "0644"},
                  "loop": "{{ boot_server_plan.hosts }}"},
                 {"name": "nginx", "ansible.builtin.template": {
                     "src": str(ROLE / "templates" / "nginx-boot.conf.j2"), "dest": str(out / "nginx.conf"), "mode": "0644"}},
             ]}]
    (out / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    result = subprocess.run([bin_path("ansible-playbook"), "-i", str(site_file(tmp, proxy)),
                             "-e", f"ansible_python_interpreter={sys.executable}", str(out / "play.yml")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[bool, Path]:
    tmp = tmp_path_factory.mktemp("boot")
    return {proxy: render(tmp, proxy) for proxy in (False, True)}


def plan_addresses() -> dict[str, str]:
    from infra.plan import build_plan
    from infra.site import load_site
    path = ROOT / "inventories" / "demo" / "site.yml"
    plan = build_plan(load_site(path), path)
    return {name: h.address() for name, h in plan.hosts.items()}


def test_each_declared_host_gets_its_planned_address_and_no_one_else_is_answered(rendered):
    addresses = plan_addresses()
    for proxy, out in rendered.items():
        lines = (out / "dnsmasq.conf").read_text().splitlines()
        hosts = sorted(line for line in lines if line.startswith("dhcp-host="))
        assert hosts == [f"dhcp-host={MACS[n].lower()},{addresses[n]},{n}" for n in sorted(MACS)]
        assert "dhcp-ignore=tag:!known" in lines and "port=0" in lines
        assert f"dhcp-boot=tag:ipxe,http://{addresses['ctl01']}/boot/menu.ipxe" in lines
        ranges = [line for line in lines if line.startswith("dhcp-range=")]
        assert ranges == (["dhcp-range=192.168.100.0,proxy,255.255.255.0"] if proxy
                          else ["dhcp-range=192.168.100.0,static,255.255.255.0,12h"])


def test_each_hosts_ipxe_script_names_its_node_types_bundle(rendered):
    server = plan_addresses()["ctl01"]
    scripts = sorted(p.name for p in (rendered[False] / "boot").glob("*.ipxe"))
    assert scripts == ["52-54-00-aa-00-01.ipxe", "52-54-00-aa-00-02.ipxe", "menu.ipxe"]     # no script for ctl01
    for mac in MACS.values():
        lines = (rendered[False] / "boot" / f"{mac.lower().replace(':', '-')}.ipxe").read_text().splitlines()
        assert lines[0] == "#!ipxe"
        # the bundle boot.py writes reads its files from this setting; the demo's compute pool is of type vm-compute
        assert f"set {boot.URL_VARIABLE} http://{server}/images/vm-compute" in lines
        assert f"chain ${{{boot.URL_VARIABLE}}}/boot.ipxe" in lines
    menu = (rendered[False] / "boot" / "menu.ipxe").read_text()
    assert f"chain http://{server}/boot/${{mac:hexhyp}}.ipxe || exit" in menu


@pytest.fixture(scope="module")
def debian_dnsmasq(tmp_path_factory):
    """Debian 13's dnsmasq, ipxe, nginx and busybox (its udhcpc) in a throw-away overlay of a cached chroot (private mount namespace)."""
    base = cached_chroot("boot", "trixie", ["dnsmasq-base", "ipxe", "curl", "nginx", "busybox"])
    layers = tmp_path_factory.mktemp("boot-chroot")
    with Chroot(layers / "layers" / "merged", layers / "scratch", setup=overlay_setup(base, layers / "layers")) as chroot:
        yield chroot


@pytest.mark.parametrize("proxy", [False, True], ids=["static", "proxy"])
def test_debian_dnsmasq_accepts_the_configuration(rendered, debian_dnsmasq, proxy):
    conf = rendered[proxy] / "dnsmasq.conf"
    result = debian_dnsmasq.shell(f'cp {conf} "$R/tmp/boot.conf"\nchroot "$R" dnsmasq --test --conf-file=/tmp/boot.conf 2>&1',
                                  check=False)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert b"syntax check OK" in result.stdout


def test_the_ipxe_binaries_the_install_part_copies_are_in_debians_package(debian_dnsmasq):
    install = yaml.safe_load((ROLE / "tasks" / "install.yml").read_text())
    names = next(t["loop"] for t in install if "ansible.builtin.copy" in t)
    for name in names:
        debian_dnsmasq.shell(f'test -s "$R/usr/lib/ipxe/{name}"')


def test_dnsmasq_serves_ipxe_over_tftp_and_nginx_the_hosts_script_in_a_private_network(rendered, debian_dnsmasq):
    """Debian 13's dnsmasq and nginx with the rendered files, in a private network namespace whose loopback carries
    the planned server address: curl fetches undionly.kpxe over TFTP and node01's iPXE script over HTTP."""
    out, server = rendered[False], plan_addresses()["ctl01"]
    mac = MACS["node01"].lower().replace(":", "-")
    body = f"""
mkdir -p "$R/srv/gigafactory/tftp" "$R/srv/gigafactory/http/boot" "$R/srv/gigafactory/http/images/vm-compute"
cp "$R/usr/lib/ipxe/undionly.kpxe" "$R/usr/lib/ipxe/ipxe.efi" "$R/srv/gigafactory/tftp/"
cp {out}/boot/*.ipxe "$R/srv/gigafactory/http/boot/"
cp {out}/dnsmasq.conf "$R/tmp/boot.conf"
printf '%s\\n' 'user root;' 'pid /tmp/nginx.pid;' 'error_log /tmp/nginx-error.log;' 'events {{}}' \\
  'http {{ access_log off; include /etc/nginx/mime.types; include /tmp/site.conf; }}' > "$R/tmp/nginx.conf"
cp {out}/nginx.conf "$R/tmp/site.conf"
export R
exec unshare --net bash -c '
set -eu
ip link set lo up
ip addr add {server}/24 dev lo
chroot "$R" dnsmasq --conf-file=/tmp/boot.conf --user=root --pid-file=/tmp/dnsmasq.pid --log-facility=/tmp/dnsmasq.log
chroot "$R" nginx -c /tmp/nginx.conf
trap "kill \\$(cat $R/tmp/dnsmasq.pid) \\$(cat $R/tmp/nginx.pid)" EXIT
curl -sS --max-time 20 -o /tmp/undionly.kpxe.$$ tftp://{server}/undionly.kpxe
cmp /tmp/undionly.kpxe.$$ "$R/usr/lib/ipxe/undionly.kpxe" && rm -f /tmp/undionly.kpxe.$$ && echo tftp-ok
curl -sS --max-time 20 http://{server}/boot/{mac}.ipxe
'
"""
    result = debian_dnsmasq.shell(body, check=False, timeout=120)
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    assert "tftp-ok" in output
    assert f"set {boot.URL_VARIABLE} http://{server}/images/vm-compute" in output


def test_a_declared_mac_is_leased_its_planned_address_and_no_router_an_undeclared_one_nothing(rendered,
                                                                                               debian_dnsmasq):
    """A real DHCP exchange on a veth pair in a private network namespace: busybox's udhcpc with node01's MAC gets
    node01's planned address and no router (the boot server is not the network's gateway); another MAC gets no
    lease at all."""
    out, addresses = rendered[False], plan_addresses()
    server = addresses["ctl01"]
    body = f"""
cp {out}/dnsmasq.conf "$R/tmp/boot.conf"
mkdir -p "$R/srv/gigafactory/tftp"
printf '%s\\n' '#!/bin/sh' '[ "$1" = bound ] && echo "lease ip=$ip router=${{router:-none}}"' 'exit 0' > "$R/tmp/lease.sh"
chmod 0755 "$R/tmp/lease.sh"
export R
exec unshare --net bash -c '
set -eu
ip link set lo up
ip link add srv type veth peer name cli
ip addr add {server}/24 dev srv
ip link set srv up
chroot "$R" dnsmasq --conf-file=/tmp/boot.conf --user=root --pid-file=/tmp/dnsmasq.pid --log-facility=/tmp/dnsmasq.log
trap "kill \\$(cat $R/tmp/dnsmasq.pid)" EXIT
ip link set cli address {MACS["node01"].lower()}
ip link set cli up
chroot "$R" busybox udhcpc -i cli -n -q -f -t 5 -T 2 -s /tmp/lease.sh
ip link set cli down
ip link set cli address 52:54:00:aa:00:99
ip link set cli up
if chroot "$R" busybox udhcpc -i cli -n -q -f -t 2 -T 2 -s /tmp/lease.sh; then echo undeclared-leased; fi
'
"""
    result = debian_dnsmasq.shell(body, check=False, timeout=120)
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()
    leases = [line for line in output.splitlines() if line.startswith("lease ")]
    assert leases == [f"lease ip={addresses['node01']} router=none"], output
    assert "undeclared-leased" not in output


def test_the_bundles_script_makes_live_boot_fetch_through_the_interface_ipxe_booted_from():
    kernel = next(line for line in boot.ipxe_script(None, "vm-compute", "k").splitlines() if line.startswith("kernel "))
    assert f"boot=live fetch=${{{boot.URL_VARIABLE}}}/root.squashfs" in kernel
    assert "BOOTIF=01-${netX/mac:hexhyp}" in kernel       # else live-boot takes the first interface DHCP answers on


def test_up_passes_each_served_node_types_bundle_from_the_image_cache_and_refuses_without_one(tmp_path, monkeypatch):
    from infra.image.cache import image_key, images_root, phase_digests, served_node_types, type_images
    from infra.project import REPO_ROOT
    from infra.orchestrate.up import OrchestrationError, UpOptions, boot_bundles, up
    from infra.plan import build_plan
    from infra.site import load_site
    monkeypatch.setenv("GIGAFACTORY_CACHE", str(tmp_path / "cache"))
    path = site_file(tmp_path, proxy=False)
    site = load_site(str(path))
    plan = build_plan(site, str(path))
    assert served_node_types(site, plan) == ["vm-compute"]          # node01 and node02 declare MACs, ctl01 none
    runs = tmp_path / "runs"
    with pytest.raises(OrchestrationError, match="no network-boot bundle of node type vm-compute .*--node-type vm-compute"):
        up(UpOptions(site=path, only=["boot"], runs_root=runs))
    assert not runs.exists()                                          # refused before anything was touched
    # once built (the image's image.json under its key), the bundle is its netboot/ folder in the cache
    image = type_images(site, plan, ["vm-compute"])[0]
    built = images_root() / image_key(site, image, phase_digests(REPO_ROOT, path, image.phases), plan)
    built.mkdir(parents=True)
    (built / "image.json").write_text("{}")
    assert boot_bundles(site, plan, path) == {"vm-compute": str(built / "netboot")}
