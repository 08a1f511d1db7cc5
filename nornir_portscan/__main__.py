"""``python -m nornir_portscan`` runs the ``portscan`` command line."""

import sys

from nornir_portscan.cli import main

sys.exit(main())
