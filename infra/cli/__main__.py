"""``python -m infra.cli``: the ``gigafactory`` command line."""

import sys

from . import main

sys.exit(main())
