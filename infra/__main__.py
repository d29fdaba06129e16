"""Pulumi entry point (``main: infra/`` in Pulumi.yaml): declares the stack's site.

Pulumi runs this folder as a program, which puts ``infra/`` itself first on
``sys.path``; there ``infra/pulumi/`` would shadow the Pulumi SDK, so the
repository root takes its place before anything else is imported.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from infra.pulumi.program import main  # noqa: E402

main()
