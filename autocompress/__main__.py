"""``python -m autocompress`` → :func:`autocompress.cli.main`."""

from __future__ import annotations

import sys

from autocompress.cli import main

sys.exit(main())
