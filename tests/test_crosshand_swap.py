"""Cross hands exchanged in the data (RL <-> LR, labels kept): CP warns (misfitcheck.py, ``swap``).

Review 59c: on a VLA-style circular-feed MS whose DATA had RL and LR exchanged, the recipe gave 3C286
0.2% polarised for 10%, with nothing said (CASA neither); the cross-hand misfit check's per-scan and
per-sub-band fits failed alike (ratio ~1).  Over a cell covering the parallactic angle, the exchanged
cross hands agree with the model only when exchanged back: |A_swap| / |A| of CP's phase sum.
"""

import shutil

import numpy as np
import pytest

from alakazam.calibration import misfitcheck
from alakazam.sim import simulate_ms

MATCH = "with the two exchanged"
BLOCK = dict(jones=["K", "G", "G", "KC", "CP"], field=["3C286"],
             time_interval=["scan", "inf", "int", "inf", "inf"], combine=["", "", "", "scan", "scan"],
             freq_interval=["full", "2MHz", "full", "full", "2MHz"])


def _exchange(ms):
    from casacore.tables import table

    with table(ms, readonly=False, ack=False) as t:
        d = t.getcol("DATA")
        d[..., [1, 2]] = d[..., [2, 1]]
        t.putcol("DATA", d)


@pytest.fixture(scope="module", params=["circular", "linear"])
def pair(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"swap_{request.param}")
    ms = str(d / "right.ms")
    simulate_ms(ms, feed=request.param, n_ant=8, n_chan=(16,), int_s=120.0, scan_len_s=600.0,
                duration_h=3.0, noise=0.02, seed=5, flag_rows=0.0, dead_ant=False)
    sw = str(d / "swapped.ms")
    shutil.copytree(ms, sw)
    _exchange(sw)
    return request.param, d, ms, sw


def _run(solve_warnings, d, ms, name):
    return solve_warnings(MATCH, ms=ms, output=str(d / f"{name}.h5"), ref_ant="C00", apply_parang=True,
                          **BLOCK)


def test_exchanged_cross_hands_are_warned(pair, solve_warnings):
    """Circular feeds: the exchanged MS warns, naming CP0, the field and the likely cause; the right one
    does not.  Linear feeds: an exchange of XY and YX of a source without V is CP's phase with the other
    sign (the feed-frame cross hands are real), so nothing is warned either way (module doc)."""
    feed, d, ms, sw = pair
    right = _run(solve_warnings, d, ms, "right")
    swapped = _run(solve_warnings, d, sw, "swapped")
    assert right == []
    if feed == "circular":
        assert len(swapped) == 1, swapped
        assert swapped[0].startswith("CP0 (CP) on field(s) 3C286: the data's cross hands agree"), swapped[0]
        assert "probably swapped" in swapped[0] and "CORR_TYPE" in swapped[0]
    else:
        assert swapped == []


def test_swap_ratio_values(pair, tmp_path, monkeypatch):
    """The measured ratio (median over bins with signal): circular right about c, exchanged about 1 / c,
    c = 0.27 the coherence of the model's squared cross hands over this 3-h track (measured 0.27 and
    3.1; the threshold 2 between); linear about 1 either way (degenerate: not warned)."""
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve

    feed, d, ms, sw = pair
    seen = []
    real = misfitcheck.swap_ratio
    monkeypatch.setattr(misfitcheck, "swap_ratio", lambda batch: seen.append(real(batch)) or seen[-1])
    got = {}
    for name, m in (("right", ms), ("swapped", sw)):
        seen.clear()
        run_solve(solve_config_from_dict(dict(ms=m, output=str(tmp_path / f"{name}.h5"), ref_ant="C00",
                                              apply_parang=True, quiet=True, **BLOCK)))
        assert seen and all(np.isfinite(seen))
        got[name] = max(seen)
    print(feed, {k: f"{v:.3g}" for k, v in got.items()})
    if feed == "circular":
        assert got["right"] < 0.4 and got["swapped"] > 1.25 * misfitcheck.SWAP_RATIO
    else:
        assert max(got.values()) < misfitcheck.SWAP_RATIO


def test_swap_sums_match_their_definition():
    """The compiled per-cell sums of the check equal the numpy definition (``swap_sums``' docstring) on
    a batch with flagged samples, one cross hand flagged alone, and a cell with no usable sample."""
    from alakazam.solvers import CellBatch, cross_phase

    rng = np.random.default_rng(3)
    n_cell, n_ant, n_s = 4, 5, 7
    a1, a2 = np.triu_indices(n_ant, 1)
    shape = (n_cell, len(a1), n_s, 4)
    cplx = lambda: rng.standard_normal(shape) + 1j * rng.standard_normal(shape)   # noqa: E731
    v, m = cplx(), cplx()
    w = rng.uniform(0.5, 2.0, shape)
    w[rng.random(shape) < 0.3] = 0.0
    w[3] = 0.0
    w[2, ..., 1] = 0.0
    w[2, 0, 0, 1] = 1.0
    b = CellBatch(vis=v, model=m, weight=w, ant1=a1.astype(np.int32), ant2=a2.astype(np.int32),
                  freq=np.ones((n_cell, n_s)), n_ant=n_ant, ref_ant=0)
    got = cross_phase.swap_sums(b)
    for c in range(n_cell):
        ok = (w[c, ..., 1] > 0) & (w[c, ..., 2] > 0)
        w1, w2 = np.where(ok, w[c, ..., 1], 0), np.where(ok, w[c, ..., 2], 0)
        v1, v2, m1, m2 = v[c, ..., 1], v[c, ..., 2], m[c, ..., 1], m[c, ..., 2]
        want = [np.sum(w1 * np.conj(v1) * m1 + w2 * v2 * np.conj(m2)),
                np.sum(w1 * np.conj(v2) * m1 + w2 * v1 * np.conj(m2)),
                np.sum(w1 * np.abs(m1) ** 2 + w2 * np.abs(m2) ** 2)]
        np.testing.assert_allclose(got[c], want, rtol=1e-12, atol=1e-12)
    assert got[3].tolist() == [0, 0, 0] and got[2, 2].real > 0
