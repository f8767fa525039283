"""akflag mode='extend' in CASA 6.7 flagdata's order (alakazam/flagging/extend.py): the neighbour rules
from the incoming flags, then growtime / growfreq (">= %") from their result, then extendpols; time
neighbours are the baseline's integrations in time order, across a missing one.  The rules are pinned
on planes here; the parity test runs flagdata itself (skipped without CASA at /work/casavenv or
$ALAKAZAM_CASA_PYTHON)."""

import os
import sys
import shutil
import subprocess

import numpy as np
import pytest
from casacore.tables import table

from alakazam.flagging.extend import Rules as _Cfg
from alakazam.flagging.extend import extend_plane
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import casa_python  # noqa: E402  (tests/casa_python.py)

CASA_PY = casa_python() or ""


def test_growth_per_correlation_before_extendpols():
    """XX flagged in 3 of 10 integrations of a channel, YY in 3 others: neither reaches growtime=50 on its
    own, so the channel is not grown; extendpols then flags those 6 integrations in every correlation
    (before: extendpols first made 6 of 10 and the whole channel was flagged)."""
    f = np.zeros((10, 4, 2), bool)
    f[:3, 1, 0] = True
    f[3:6, 1, 1] = True
    out = extend_plane(f, _Cfg(growtime=50.0))
    assert out[:6, 1].all() and not out[6:, 1].any() and out.sum() == 12


def test_growth_at_exactly_the_percentage():
    f = np.zeros((4, 10, 1), bool)
    f[2, :5, 0] = True                              # 5 of 10 channels: 50%
    assert extend_plane(f, _Cfg(growfreq=50.0))[2].all()
    assert extend_plane(f, _Cfg(growfreq=50.1)).sum() == 5


def test_neighbour_rules_from_the_incoming_flags_then_growth():
    f = np.zeros((5, 5, 1), bool)
    f[2, 2] = True
    both = extend_plane(f, _Cfg(flagneartime=True, flagnearfreq=True))[:, :, 0]
    assert both.sum() == 5 and both[1:4, 2].all() and both[2, 1:4].all()      # a plus, not a 3 x 3 block
    # the neighbour rules feed the growth: 2 flagged integrations of 5 (40%) become 4 (80%) with
    # flagneartime, so growtime=60 grows the channel
    g = np.zeros((5, 3, 1), bool)
    g[1, 1] = g[3, 1] = True
    assert extend_plane(g, _Cfg(growtime=60.0, flagneartime=True))[:, 1].all()
    assert extend_plane(g, _Cfg(growtime=60.0)).sum() == 2


def _mixed_flags_ms(path, gap=False):
    simulate_ms(path, n_ant=4, n_ant_extra=1, n_chan=(16,), duration_h=0.5, int_s=60.0, noise=0.05, seed=1,
                leakage=False, dead_ant=False, flag_rows=0.0, rfi=False)
    with table(path, readonly=False, ack=False) as t:
        f = t.getcol("FLAG")
        f[:] = False
        rng = np.random.default_rng(5)
        f[..., 0] = rng.random(f.shape[:2]) < 0.08
        f[..., 3] = rng.random(f.shape[:2]) < 0.08
        f[rng.random(f.shape[0]) < 0.3, 5, 0] = True
        f[rng.random(f.shape[0]) < 0.3, 9, 3] = True
        if gap:                                     # one baseline misses an integration mid-scan
            a1, a2, sc, tm = (t.getcol(c) for c in ("ANTENNA1", "ANTENNA2", "SCAN_NUMBER", "TIME"))
            names = table(os.path.join(path, "ANTENNA"), ack=False).getcol("NAME")
            extra = [i for i in range(len(names)) if i not in set(a1) | set(a2)][0]
            idx = np.flatnonzero((a1 == a1[0]) & (a2 == a2[0]) & (sc == sc[0]))
            idx = idx[np.argsort(tm[idx])]
            a2[idx[5]] = extra
            t.putcol("ANTENNA2", a2)
            f[idx, :, :] = False
            f[idx[4], 3, 0] = True                  # just before the gap
        t.putcol("FLAG", f)


def test_time_neighbours_across_a_missing_integration(tmp_path):
    from alakazam.caltasks import akflag

    ms = str(tmp_path / "gap.ms")
    _mixed_flags_ms(ms, gap=True)
    with table(ms, ack=False) as t:
        a1, a2, sc, tm, f0 = (t.getcol(c) for c in ("ANTENNA1", "ANTENNA2", "SCAN_NUMBER", "TIME", "FLAG"))
    idx = np.flatnonzero((a1 == a1[0]) & (a2 == a2[0]) & (sc == sc[0]))
    idx = idx[np.argsort(tm[idx])]
    akflag(vis=ms, mode="extend", extendpols=False, growtime=0.0, growfreq=0.0, flagneartime=True)
    with table(ms, ack=False) as t:
        f = t.getcol("FLAG")
    assert list(np.flatnonzero(f[idx, 3, 0])) == [3, 4, 5]        # 5 = the integration after the gap
    assert f0[idx, 3, 0].sum() == 1


SETS = [dict(extendpols=True, growtime=50.0, growfreq=50.0),
        dict(extendpols=True, growtime=50.0, growfreq=50.0, growaround=True, flagneartime=True,
             flagnearfreq=True),
        dict(extendpols=False, growtime=30.0, growfreq=70.0, growaround=True),
        dict(extendpols=True, growtime=0.0, growfreq=40.0, flagneartime=True)]


@pytest.mark.skipif(not os.access(CASA_PY, os.X_OK), reason=f"no CASA Python at {CASA_PY}")
@pytest.mark.parametrize("gap", [False, True])
def test_extend_equals_flagdata(tmp_path, gap):
    from alakazam.caltasks import akflag

    base = str(tmp_path / "base.ms")
    _mixed_flags_ms(base, gap=gap)
    for i, p in enumerate(SETS):
        casa, ours = str(tmp_path / f"casa{i}.ms"), str(tmp_path / f"ak{i}.ms")
        shutil.copytree(base, casa)
        shutil.copytree(base, ours)
        code = (f"from casatasks import flagdata\n"
                f"flagdata(vis={casa!r}, mode='extend', flagbackup=False, **{p!r})\n")
        r = subprocess.run([CASA_PY, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        akflag(vis=ours, mode="extend", **p)
        with table(casa, ack=False) as t:
            want = t.getcol("FLAG")
        with table(ours, ack=False) as t:
            got = t.getcol("FLAG")
        assert want.mean() > 0.06                      # something was extended
        np.testing.assert_array_equal(got, want, err_msg=str(p))
