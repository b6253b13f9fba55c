"""``python -m trainstab`` runs the command line."""

import sys

from trainstab.cli import main

sys.exit(main())
