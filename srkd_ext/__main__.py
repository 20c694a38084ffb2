"""`python -m srkd_ext` is the `srkd` command."""

import sys

from srkd_ext.cli import main

sys.exit(main())
