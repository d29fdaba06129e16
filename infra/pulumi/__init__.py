"""Pulumi components for a site: network, storage, Kubernetes clusters, tenants, node configuration.

The program entry is ``infra/__main__.py`` (``main: infra/`` in Pulumi.yaml); it calls
``infra.pulumi.program.main``. One ComponentResource per subsystem, one module each.
"""

if __name__ == "pulumi":
    # Imported as the top-level ``pulumi``: a process (e.g. Pulumi's dynamic-provider host,
    # ``python -m pulumi.dynamic``) runs with infra/ first on sys.path. Step aside for the SDK.
    import importlib
    import os
    import sys

    _infra = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _infra]
    del sys.modules["pulumi"]
    sys.modules["pulumi"] = importlib.import_module("pulumi")
