"""Pulumi components for a site: network, storage, Kubernetes clusters, tenants, node configuration.

The program entry is ``infra/__main__.py`` (``main: infra/`` in Pulumi.yaml); it calls
``infra.stack.program.main``. One ComponentResource per subsystem, one module each.
"""
