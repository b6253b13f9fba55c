"""``python -m trainstab`` runs the command line."""

import sys

from trainstab.cli.main import main

sys.exit(main())
