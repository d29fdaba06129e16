"""SSH keys, known_hosts and reachability checks for the run's VMs."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path


def generate_key(path: Path, comment: str) -> Path:
    """Create an ed25519 key pair at `path` (+ .pub) unless it exists; return the private key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
        )
    return path


def known_hosts_line(host: str, port: int, public_key: str) -> str:
    """A known_hosts entry for host:port with the key type and base64 of `public_key`."""
    key_type, key_b64 = public_key.split()[:2]
    target = host if port == 22 else f"[{host}]:{port}"
    return f"{target} {key_type} {key_b64}\n"


def ssh_banner(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when something on host:port greets with an SSH protocol banner."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def ssh_argv(
    host: str, port: int, user: str, key: Path, known_hosts: Path, command: list[str]
) -> list[str]:
    """ssh that trusts only the run's known_hosts (StrictHostKeyChecking=yes)."""
    return [
        "ssh", "-F", "/dev/null", "-i", str(key), "-p", str(port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
        f"{user}@{host}", "--", *command,
    ]
