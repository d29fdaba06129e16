"""How a node boots from its image over the network: Debian's live-boot in the initrd, started by iPXE.

live-boot (``boot=live fetch=<url>``) brings the network up, downloads the squashfs into memory, mounts it
read-only and puts a tmpfs overlay on it as the root: Debian's own, maintained stateless boot, in the mirror for
Debian 12 and 13, rather than an initramfs script of ours. It is installed only to make that initrd and purged
again: the root file system does not need it once booted, and its hook would triple the disk initrd (network
drivers, busybox), which every VM boot unpacks.
"""

from __future__ import annotations

import re

# Runs in the tree: live-boot installed, a second initrd, with network drivers, squashfs and overlay (MODULES=netboot plus live-boot's
# hook) beside the disk's small MODULES=list one, from a copy of the tree's initramfs-tools configuration;
# live-boot purged.
NETBOOT_PACKAGES = ("live-boot",)
NETBOOT_INITRAMFS = """v=$(ls /boot/vmlinuz-* | sort -V | tail -n 1); v=${v#/boot/vmlinuz-}
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends live-boot >/dev/null
d=/tmp/gigafactory-netboot-initramfs
rm -rf "$d"; cp -a /etc/initramfs-tools "$d"
printf 'MODULES=netboot\\nBUSYBOX=y\\n' > "$d/conf.d/gigafactory.conf"
printf 'virtio_pci\\nvirtio_net\\nsquashfs\\noverlay\\n' > "$d/modules"
mkinitramfs -d "$d" -o "/boot/netboot-initrd.img-$v" "$v"
rm -rf "$d"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --autoremove live-boot >/dev/null
"""

# The squashfs root's /etc/fstab: never the disk image's (the test bed's names /dev/vda as the root, which
# systemd-remount-fs then fails to apply to the overlay); live-boot appends its overlay root and /tmp at boot.
NETBOOT_FSTAB = "# gigafactory network boot: the root is live-boot's overlay, which adds its lines at boot\n"

URL_VARIABLE = "gf-image-url"       # the iPXE setting the script's files are read from
_URL = re.compile(r"https?://[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")


def ipxe_script(base_url: str | None, node_type: str, key: str, console: str = "ttyS0") -> str:
    """An iPXE script that boots the bundle served at ``base_url`` (vmlinuz, initrd.img, root.squashfs there).

    Without ``base_url`` the script reads the ``gf-image-url`` setting, which the serving host's menu sets before
    chaining it. A URL must be http(s) without spaces or quotes (it lands on the kernel command line).
    """
    lines = ["#!ipxe", f"# gigafactory node image: node type {node_type}, key {key}"]
    if base_url is not None:
        if not _URL.fullmatch(base_url):
            raise ValueError(f"--boot-url: {base_url!r} is not an http(s) URL")
        lines.append(f"set {URL_VARIABLE} {base_url.rstrip('/')}")
    else:
        lines.append(f"# the caller sets {URL_VARIABLE} to the URL this bundle is served from")
    # BOOTIF (pxelinux's convention, which live-boot reads): the interface iPXE booted from, by MAC, is the one
    # live-boot configures and fetches through; without it, it takes the first interface that answers DHCP.
    lines += [f"kernel ${{{URL_VARIABLE}}}/vmlinuz initrd=initrd.img boot=live fetch=${{{URL_VARIABLE}}}/root.squashfs "
              f"BOOTIF=01-${{netX/mac:hexhyp}} console={console} quiet",
              f"initrd ${{{URL_VARIABLE}}}/initrd.img", "boot"]
    return "\n".join(lines) + "\n"
