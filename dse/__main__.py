"""``python -m dse``: the ``dse`` command line."""

import sys

from dse.cli import main

sys.exit(main())
