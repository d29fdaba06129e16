"""Pulumi entry point (``main: infra/`` in Pulumi.yaml): declares the stack's site.

The program itself is ``infra.stack.program``; the project is installed in the
virtualenv Pulumi.yaml names (``pip install -e``), so ``infra`` imports as a package.
"""

from infra.stack.program import main

main()
