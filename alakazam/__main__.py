"""``python -m alakazam ...``: the ``alakazam`` command (alakazam.cli.entry), for a tree on PYTHONPATH or
an environment whose scripts folder is not on PATH."""

import sys

from .cli import entry

if __name__ == "__main__":
    sys.exit(entry())
