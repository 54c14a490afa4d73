"""``python -m agents_sdk`` runs the ``warden`` command line."""

import sys

from agents_sdk.cli import main

sys.exit(main())
