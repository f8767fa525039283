"""A process-wide cache scope: what :mod:`alakazam.core.readcache` and :mod:`alakazam.core.metacache`
keep lives only inside ``with scope.keep():`` (re-entrant; the outermost exit empties the cache), and
not at all when the scope's environment variable is ``0``."""

from __future__ import annotations

import contextlib
import os
import threading


class Scope:
    """``env``: the variable that turns the cache off with ``0``; ``cache``: the dict (or OrderedDict)
    emptied at the outermost exit.  ``lock`` guards the depth and the cache (the cache module's own)."""

    def __init__(self, env: str, cache: dict):
        self.env = env
        self.cache = cache
        self.lock = threading.RLock()
        self.depth = 0
        self.also = []          # other dicts emptied with the cache (core/rowindex.py's run indexes)

    def enabled(self) -> bool:
        return os.environ.get(self.env, "1") != "0"

    def active(self) -> bool:
        """Inside :meth:`keep` (and not turned off)."""
        return self.depth > 0 and self.enabled()

    @contextlib.contextmanager
    def keep(self):
        with self.lock:
            self.depth += 1
        try:
            yield
        finally:
            with self.lock:
                self.depth -= 1
                if self.depth == 0:
                    self.cache.clear()
                    for c in self.also:
                        c.clear()
