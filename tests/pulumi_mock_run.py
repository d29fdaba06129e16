"""Run the Pulumi program under mocks in this process and print what it declared, as JSON.

    python tests/pulumi_mock_run.py SITE_FILE {preview|up}

One process per configuration: ``set_mocks`` configures process-wide state, so the
tests start this script once for each site and mode instead of sharing a runtime.
Mocks are installed before the program (``infra/__main__.py``) runs.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from pathlib import Path

import pulumi
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

SECRET_SIG = "4dabf18193072939515e22adb298388d"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"
UNKNOWN = "<unknown>"
ROOT = Path(__file__).resolve().parent.parent


class RecordingMonitor(MockMonitor):
    """The mock monitor, also keeping each registration's parent, provider and dependencies."""

    def __init__(self, mocks):
        super().__init__(mocks)
        self.requests: dict[str, dict] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        self.requests[response.urn] = {"parent": request.parent, "provider": request.provider,
                                       "dependencies": list(request.dependencies), "custom": request.custom}
        return response


class Mocks(pulumi.runtime.Mocks):
    def __init__(self, preview: bool):
        self.preview = preview
        self.created: list[dict] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.created.append({"type": args.typ, "name": args.name, "inputs": args.inputs, "provider": args.provider})
        state = dict(args.inputs)
        if args.typ.endswith(":AnsiblePhase"):
            state.pop("kubeconfig", None)           # an output: unknown in a preview, set by the phase on update
            if not self.preview and args.inputs.get("phase") == "kubernetes":
                state["kubeconfig"] = KUBECONFIG
        return ("" if self.preview else f"{args.name}-id"), state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, None


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


async def _resolve(value):
    """(plain value, secret?) of a stack output; unknown values become UNKNOWN."""
    output = pulumi.Output.from_input(value)
    known = await output.is_known()
    secret = await output.is_secret()
    if not known:
        return UNKNOWN, secret
    inner = await output.future(with_unknowns=True)
    if isinstance(inner, dict):
        pairs = {k: await _resolve(v) for k, v in inner.items()}
        return {k: v for k, (v, _) in pairs.items()}, secret or any(s for _, s in pairs.values())
    return inner, secret


def main(site: str, mode: str) -> dict:
    preview = mode == "preview"
    mocks = Mocks(preview)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="gigafactory", stack=Path(site).parent.name, preview=preview, monitor=monitor)
    pulumi.runtime.set_config("gigafactory:site", site)
    started = time.monotonic()
    error = None
    try:
        # As Pulumi's Python host runs ``main: infra/``: the folder as a program, infra/ first on sys.path.
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "infra"), run_name="__main__")))
    except pulumi.RunError as err:
        error = {"type": "RunError", "message": str(err)}
    root = pulumi.runtime.settings.get_root_resource()
    outputs, secrets = {}, {}
    for name, value in root.outputs.items():
        plain, secret = _sync_await(_resolve(value))
        outputs[name] = plain
        secrets[name] = secret
    # Per-key secrecy of the kubeconfigs, which is what matters.
    kubeconfig_secret = {}
    if "kubeconfigs" in root.outputs:
        for cluster, value in root.outputs["kubeconfigs"].items():
            kubeconfig_secret[cluster] = _sync_await(pulumi.Output.from_input(value).is_secret())
    resources = []
    for urn in monitor.resources:
        extra = monitor.requests.get(urn, {})
        created = next((c for c in mocks.created if urn.endswith("::" + c["name"]) and urn.split("::")[2].endswith(c["type"])), {})
        resources.append({"urn": urn, "type": urn.split("::")[2].split("$")[-1], "name": urn.split("::")[-1],
                          "parent": extra.get("parent", ""), "provider": extra.get("provider", ""),
                          "dependencies": extra.get("dependencies", []), "inputs": _jsonable(created.get("inputs", {}))})
    return {"error": error, "resources": resources, "outputs": _jsonable(outputs), "secret_outputs": secrets,
            "kubeconfig_secret": kubeconfig_secret, "seconds": round(time.monotonic() - started, 3)}


if __name__ == "__main__":
    json.dump(main(sys.argv[1], sys.argv[2]), sys.stdout)
