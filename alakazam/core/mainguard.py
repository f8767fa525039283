"""Worker processes started without re-running the user's script.

Python's ``spawn`` start method (dask's LocalCluster nannies, the aoflagger process pool) runs the
parent's ``__main__`` file again in every child, as ``__mp_main__``: a user script that calls a task at
the top level -- as CASA scripts do, without ``if __name__ == "__main__":`` -- would run again in each
worker (there it failed on the MS writer lock, so the cluster never started).  Inside
:func:`main_hidden` the main module has no ``__file__`` / ``__spec__``, so a child started then imports
nothing of it (the children need only alakazam's modules).
"""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def main_hidden():
    """``__main__`` without ``__file__`` / ``__spec__`` while worker processes start."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    try:
        if "__file__" in saved:
            del main.__file__
        if "__spec__" in saved:
            main.__spec__ = None
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)
