"""``python -m imnet_data`` is the same as the ``imnet-data`` command."""
from imnet_data.cli import main

raise SystemExit(main())
