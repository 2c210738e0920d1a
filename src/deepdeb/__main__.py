"""``python -m deepdeb``: the ``deepdeb`` command."""

from deepdeb.cli import main

raise SystemExit(main())
