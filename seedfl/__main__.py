"""``python -m seedfl``: the same as the ``seedfl`` command."""

from seedfl.cli import main

raise SystemExit(main())
