"""``python -m lipnb``: see :mod:`lipnb.cli`."""

from lipnb.cli import main

raise SystemExit(main())
