"""What the tests against a recording Kubernetes API endpoint share: the endpoint's TLS (kubectl sends no credentials
over plain HTTP), its JSON replies and API discovery, JSON merge patches, a kubeconfig naming it, and Debian 13's
kubectl. No kube-apiserver runs here (no registry these machines reach has one): each test's handler serves the
objects it needs and records what kubectl asks."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class JsonHandler(BaseHTTPRequestHandler):
    """Replies in JSON, Kubernetes' Status for failures, API discovery of ``RESOURCES`` (the core group's), quiet."""
    RESOURCES: list[dict] = []

    def reply(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code: int, reason: str, message: str) -> None:
        self.reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code,
                          "message": message})

    def discovery(self, path: str) -> bool:
        """Answers kubectl's discovery requests (True if ``path`` was one)."""
        if path == "/api":
            self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        elif path == "/apis":
            self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        elif path == "/api/v1":
            self.reply(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": self.RESOURCES})
        else:
            return False
        return True

    def log_message(self, *args) -> None:
        pass


def serve_tls(handler: type[BaseHTTPRequestHandler], tls_dir: Path) -> tuple[ThreadingHTTPServer, str, Path]:
    """(server, its https URL, its CA certificate) for ``handler`` on loopback, with a fresh self-signed certificate."""
    ca, key = tls_dir / "apiserver.crt", tls_dir / "apiserver.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kube-apiserver",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(ca)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca, key)
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    http.socket = context.wrap_socket(http.socket, server_side=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http, f"https://127.0.0.1:{http.server_address[1]}", ca


def merge(target: dict, patch: dict) -> None:
    """JSON merge patch (RFC 7386): null removes, objects merge, everything else (lists too) replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def kubeconfig_for(path: Path, url: str, ca: Path, token: str, user: str = "user") -> Path:
    """A kubeconfig at ``path`` naming the endpoint at ``url`` (its CA ``ca``) with a bearer ``token``."""
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: riga-infer, cluster: {{server: "{url}", certificate-authority: "{ca}"}}}}]
users: [{{name: {user}, user: {{token: {token}}}}}]
contexts: [{{name: ctx, context: {{cluster: riga-infer, user: {user}}}}}]
current-context: ctx
""")
    return path


def kubectl_binary() -> str:
    """Debian 13's kubectl, from a cached chroot."""
    from chroots import cached_chroot
    return str(cached_chroot("kubectl", "trixie", ["kubectl"]) / "usr" / "bin" / "kubectl")
