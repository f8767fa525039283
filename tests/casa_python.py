"""Where the optional CASA cross-checks find CASA 6 (casatools + casatasks): this interpreter when
casatools imports here, else $ALAKAZAM_CASA_PYTHON, else /work/casavenv/bin/python; the tests skip
without one (CASA is never a dependency)."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest


def casa_python():
    """The CASA interpreter's path, or None."""
    if importlib.util.find_spec("casatools") is not None:
        return sys.executable
    for p in (os.environ.get("ALAKAZAM_CASA_PYTHON", ""), "/work/casavenv/bin/python"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def run_casa(script, cwd, timeout=600):
    """Run ``script`` (dedented) in CASA's interpreter in ``cwd`` (skip without CASA; fail on its
    error, with the end of its stderr); PYTHONPATH is not passed on (alakazam's tree is not CASA's)."""
    py = casa_python()
    if py is None:
        pytest.skip("CASA (casatools/casatasks) not available")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([py, "-c", textwrap.dedent(script)], cwd=str(cwd), capture_output=True, text=True,
                       timeout=timeout, env=env)
    if r.returncode != 0 and "No module named 'casatasks'" in r.stderr:
        pytest.skip("casatasks not installed next to casatools")
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-3000:]
    return r
