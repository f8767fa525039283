"""alakazam: direction-independent calibration of radio-interferometric Measurement Sets.

The engine (this package) knows nothing of tasks, XML or the shell; those live in
``alakazam.caltasks`` and ``alakazam.shell`` (top-level folders ``caltasks/`` and ``shell/`` in the
repository).
"""

__version__ = "0.1.0"
