"""``python -m camstream``: the ``camstream`` command, for an environment whose scripts
folder is not on PATH (a venv not activated, ``pip install --user``)."""

import sys

from streamer.cli import main

sys.exit(main())
