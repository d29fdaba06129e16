"""Files baked into the guest image: first-boot injection from QEMU fw_cfg, ssh, network."""

from __future__ import annotations

GUEST_USER = "gigafactory"
FW_CFG_PREFIX = "opt/gigafactory"
MGMT_INTERFACE = "enp0s3"

_INIT_SCRIPT = f"""#!/bin/sh
# Install what the launcher passed through QEMU fw_cfg: hostname, ssh host key, authorized key.
set -eu
modprobe qemu_fw_cfg 2>/dev/null || true
d=/sys/firmware/qemu_fw_cfg/by_name/{FW_CFG_PREFIX}
[ -d "$d" ] || exit 0
if [ -r "$d/hostname/raw" ]; then
    name=$(cat "$d/hostname/raw")
    echo "$name" > /etc/hostname
    hostname "$name"
    printf '127.0.0.1 localhost\\n127.0.1.1 %s\\n' "$name" > /etc/hosts
fi
if [ -r "$d/host_key/raw" ]; then
    install -m 0600 "$d/host_key/raw" /etc/ssh/ssh_host_ed25519_key
    install -m 0644 "$d/host_key_pub/raw" /etc/ssh/ssh_host_ed25519_key.pub
fi
if [ -r "$d/authorized_keys/raw" ]; then
    home=/home/{GUEST_USER}
    install -d -m 0700 -o {GUEST_USER} -g {GUEST_USER} "$home/.ssh"
    install -m 0600 -o {GUEST_USER} -g {GUEST_USER} "$d/authorized_keys/raw" "$home/.ssh/authorized_keys"
fi
mkdir -p /etc/gigafactory
if [ -r "$d/nics/raw" ]; then
    install -m 0644 "$d/nics/raw" /etc/gigafactory/nics.json
fi
"""

_INIT_UNIT = """[Unit]
Description=Install hostname, ssh host key and authorized key from QEMU fw_cfg
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target ssh.service ssh.socket systemd-networkd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/gigafactory-init

[Install]
WantedBy=sysinit.target
"""

# path in the guest -> (mode, content)
GUEST_FILES: dict[str, tuple[int, str]] = {
    "/usr/local/sbin/gigafactory-init": (0o755, _INIT_SCRIPT),
    "/etc/systemd/system/gigafactory-init.service": (0o644, _INIT_UNIT),
    "/etc/fstab": (0o644, "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n"),
    # QEMU user-mode networking: DHCP and DNS on the management NIC only.
    f"/etc/systemd/network/10-{MGMT_INTERFACE}.network": (
        0o644,
        f"[Match]\nName={MGMT_INTERFACE}\n\n[Network]\nDHCP=ipv4\n",
    ),
    # mke2fs -d drops file capabilities, so let every group use unprivileged ICMP sockets.
    "/etc/sysctl.d/60-gigafactory-ping.conf": (0o644, "net.ipv4.ping_group_range = 0 2147483647\n"),
    "/etc/resolv.conf": (0o644, "nameserver 10.0.2.3\n"),
    "/etc/ssh/sshd_config.d/gigafactory.conf": (
        0o644,
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n"
        # Every connection arrives from QEMU's NAT address, and readiness probes close
        # before authenticating: per-source penalties would lock the whole run out.
        "PerSourcePenalties no\n",
    ),
    # A small initrd that knows only the virtio disk: unpacking Debian's 36 MB default
    # (MODULES=most) costs seconds of every TCG boot.
    "/etc/initramfs-tools/conf.d/gigafactory.conf": (0o644, "MODULES=list\n"),
    "/etc/initramfs-tools/modules": (0o644, "virtio_pci\nvirtio_blk\next4\n"),
    f"/etc/sudoers.d/{GUEST_USER}": (0o440, f"{GUEST_USER} ALL=(ALL) NOPASSWD:ALL\n"),
    "/etc/hostname": (0o644, "gigafactory\n"),
}

# Run inside the chroot after the files are in place.
CONFIGURE_SCRIPT = f"""set -eu
useradd --create-home --shell /bin/bash {GUEST_USER}
passwd --lock root
rm -f /etc/ssh/ssh_host_*
systemctl enable gigafactory-init.service systemd-networkd.service
systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer \\
    fstrim.timer 2>/dev/null || true
update-initramfs -u -k all
apt-get clean
rm -rf /var/lib/apt/lists/*
"""
