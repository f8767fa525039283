"""alakazam: direction-independent calibration of radio-interferometric Measurement Sets.

The engine (this package) knows nothing of tasks or the shell; those live in ``alakazam.caltasks``,
``alakazam.shell`` and ``alakazam.tasks_xml`` (top-level folders ``caltasks/``, ``shell/`` and
``tasks_xml/`` of the repository, installed under this package by setup.cfg's ``package_dir``).  Only
its configuration reads the task XML, the one schema of every parameter (``schema.py``).

Source checkout: when this package is imported from the repository itself (``python -m pytest`` or
``python -c 'import alakazam'`` at the repository root, or the repository on ``PYTHONPATH``), the
repository root is appended to this package's ``__path__`` so that those three folders resolve as
subpackages exactly as they do once installed -- the working tree is what runs, without shadowing.
"""

import os as _os

__version__ = "0.1.0"

_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if (_os.path.isfile(_os.path.join(_root, "setup.cfg"))
        and _os.path.isfile(_os.path.join(_root, "tasks_xml", "akcal.xml"))):
    __path__.append(_root)      # noqa: F821 -- the package's own __path__

from .measures_data import configure as _configure_measures  # noqa: E402

_configure_measures()           # python-casacore reads the newest measures data found (measures_data.py)
