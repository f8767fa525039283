"""The apply fast path (issue 5) against the former code path on random data.

* :func:`alakazam.jones.algebra.correct_diag_inv` (product with a precomputed inverse table) vs
  ``correct_diag`` (tests/reference_kernels.py) (one complex division per sample): same flags, values
  equal to rounding, with NaN / inf / zero / subnormal-free Jones and pre-set flags.
* :func:`alakazam.calibration.chain.compose` (diagonal terms through :func:`chain.diag_table`) vs the
  product of the diagonals of :func:`chain.term_tables` (the former compose): bit-identical, with
  flagged and NaN solutions (also NaN off-diagonals), antennas missing on either side, several fields
  (nearest_time / nearest_sky / pinned / own), broadcast, pass-through and nearest frequency mappings,
  K and KC delays, ties in time and target times outside the solution range.
"""

import os
import sys

import numpy as np
import pytest

from alakazam.calibration import chain
from alakazam.io.hdf5 import SolutionSet
from alakazam.jones import algebra

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_kernels as rk  # noqa: E402  (tests/reference_kernels.py)

RNG = np.random.default_rng(7)


def _crandn(*shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


# --- kernel ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_correct_diag_inv_matches_correct_diag(dtype):
    n_t, n_ant, n_chan, n_row = 4, 6, 7, 300
    jd = _crandn(n_t, n_ant, n_chan, 2)
    bad = RNG.random(jd.shape)
    jd[bad < 0.05] = np.nan
    jd[(bad >= 0.05) & (bad < 0.1)] = 0
    jd[(bad >= 0.1) & (bad < 0.12)] = np.inf
    jd[(bad >= 0.12) & (bad < 0.14)] = complex(np.nan, 1.0)
    jd[(bad >= 0.14) & (bad < 0.2)] = 1e200           # |den| overflows with another such element
    jd[(bad >= 0.2) & (bad < 0.26)] = 1e-200          # |den| underflows with another such element
    tidx = RNG.integers(0, n_t, n_row)
    a1 = RNG.integers(0, n_ant, n_row)
    a2 = RNG.integers(0, n_ant, n_row)
    data = _crandn(n_row, n_chan, 4).astype(dtype)
    data[RNG.random(data.shape) < 0.02] = np.nan           # NaN data stay NaN (not flagged)
    flag0 = RNG.random(data.shape) < 0.1                    # pre-set flags are never cleared
    ref = np.zeros(data.shape, dtype)
    fref = flag0.copy()
    rk.correct_diag(data, jd, tidx, a1, a2, ref, fref)
    out = np.full(data.shape, 5 + 5j, dtype)
    fout = flag0.copy()
    n_new = algebra.correct_diag_inv(data, algebra.diag_inverse_table(jd), tidx, a1, a2, out, fout)
    np.testing.assert_array_equal(fout, fref)
    big = np.abs(jd) > 1e100
    tiny = np.abs(jd) < 1e-100
    over = big[tidx, a1][:, :, [0, 0, 1, 1]] & big[tidx, a2][:, :, [0, 1, 0, 1]]
    under = tiny[tidx, a1][:, :, [0, 0, 1, 1]] & tiny[tidx, a2][:, :, [0, 1, 0, 1]]
    assert over.sum() > 5 and under.sum() > 5 and fref[over].all() and fref[under].all()
    assert fout.sum() > flag0.sum() + 50 and (fout & ~flag0).sum() < fout.size // 2
    np.testing.assert_array_equal(out[fout & ~flag0], 0)
    np.testing.assert_array_equal(ref[fout & ~flag0], 0)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(out[~fout], ref[~fout], rtol=8 * eps, atol=0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    # in place (out is data), zero_bad=False: the samples without a valid solution keep the data
    inplace = data.astype(dtype, copy=True)
    f2 = flag0.copy()
    algebra.correct_diag_inv(inplace, algebra.diag_inverse_table(jd), tidx, a1, a2, inplace, f2, False)
    np.testing.assert_array_equal(f2, fref)
    jbad = np.zeros(data.shape, bool)          # the samples whose Jones is unusable
    rk.correct_diag(data, jd, tidx, a1, a2, ref, jbad)
    assert jbad.any() and (jbad & flag0).any()
    assert n_new == jbad.sum()                 # the count returned (flagged here, pre-set or not)
    np.testing.assert_array_equal(inplace[~jbad], out[~jbad])
    np.testing.assert_array_equal(inplace[jbad], data[jbad])


# --- compose --------------------------------------------------------------------------------------

def _set(field, jt, sol_ants, times, freqs, delay=False, p_flag=0.15, p_nan=0.05, ra=0.0, dec=0.5):
    n_a, n_f, n_t = len(sol_ants), len(freqs), len(times)
    if delay:
        dl = RNG.standard_normal((n_a, n_f, n_t, 2)) * 3.0
        dl[RNG.random(dl.shape) < p_nan] = np.nan
        jones = np.zeros((n_a, n_f, n_t, 2, 2), complex)
        jones[..., 0, 0] = np.exp(1j * dl[..., 0])
        jones[..., 1, 1] = np.exp(1j * dl[..., 1])
    else:
        dl = None
        jones = np.zeros((n_a, n_f, n_t, 2, 2), complex)
        jones[..., 0, 0] = _crandn(n_a, n_f, n_t)
        jones[..., 1, 1] = _crandn(n_a, n_f, n_t)
        r = RNG.random(jones.shape)
        jones[r < p_nan] = np.nan                      # also off-diagonal NaN: the matrix is flagged
        jones[(r > 0.5) & (r < 0.5 + p_nan)] = 0       # zero elements are values, not flags
    flags = RNG.random((n_a, n_f, n_t)) < p_flag
    attrs = dict(jones_type=jt, field_name=field, spw=0, ant_names=list(sol_ants), field_ra=ra,
                 field_dec=dec)
    return SolutionSet(jones=jones, flags=flags, time=np.asarray(times, float),
                       freq=np.asarray(freqs, float), delay=dl, attrs=attrs)


def _reference(terms, *args):
    diag = None
    for term in terms:
        j, _, _ = chain.term_tables(term, *args)
        d = np.stack([j[..., 0, 0], j[..., 1, 1]], axis=-1)
        diag = d if diag is None else diag * d
    return diag


DATA_ANTS = ["A0", "A1", "A2", "A3", "A4", "A5"]
SOL_ANTS = ["A3", "A0", "X9", "A1", "A5", "A2"]          # A4 missing (flagged), X9 not in the data
FREQS = np.linspace(1.0e9, 1.2e9, 12)


def _terms(select="nearest_time", solution_field=None):
    t_a = np.array([0.0, 30.0, 60.0, 60.0, 150.0])          # a duplicated time (tie)
    t_b = np.array([10.0, 95.0, 200.0])
    t_one = np.array([40.0])
    out = []
    specs = [
        ("K", dict(delay=True), [1e9]),                                       # broadcast delay
        ("G", {}, FREQS),                                                     # pass-through
        ("G", {}, [1.05e9, 1.0e9, 1.19e9]),                                   # nearest (unsorted)
        ("KC", dict(delay=True), [1.0e9, 1.2e9]),                             # KC, nearest bins
        ("G", {}, [1.1e9]),                                                   # broadcast gain
        ("G", dict(p_flag=0.0, p_nan=0.0), [1.1e9]),                          # no flags: uniform path
        ("K", dict(delay=True, p_flag=0.0, p_nan=0.0), [1.0e9, 1.1e9, 1.2e9]),
    ]
    for k, (jt, kw, fr) in enumerate(specs):
        sets = [_set("CAL1", jt, SOL_ANTS, t_a, fr, ra=0.1, **kw),
                _set("CAL2", jt, SOL_ANTS[::-1], t_b, fr, ra=1.0, **kw),
                _set("CAL2", jt, SOL_ANTS[::-1], t_one + 1000.0, fr, ra=1.0, **kw)]
        term = chain.LoadedTerm(f"T{k}", jt, sets, select, "nearest", solution_field)
        out.append(term)
    return out


@pytest.mark.parametrize("select,target,prefer_own,solution_field", [
    ("nearest_time", "TGT", True, None),
    ("nearest_sky", "TGT", True, None),
    ("pinned", "TGT", True, ["CAL2"]),
    ("pinned", "TGT", True, ["CAL1", "CAL2"]),
    ("nearest_time", "CAL1", True, None),         # own solutions
    ("nearest_time", "CAL1", False, None),
])
def test_compose_diag_fast_path_is_identical(select, target, prefer_own, solution_field):
    terms = _terms(select, solution_field)
    times = np.concatenate([[-50.0], np.sort(RNG.uniform(0, 1100, 40)), [30.0, 45.0, 77.5, 2000.0]])
    args = (0, times, FREQS, DATA_ANTS, target, (0.2, 0.5), prefer_own)
    for k in range(len(terms)):               # each term alone, then the products of the first k + 1
        for sub in ([terms[k]], terms[:k + 1]):
            ref = _reference(sub, *args)
            diag, sky = chain.compose(sub, *args)
            assert sky is None and diag.shape == ref.shape and diag.flags.c_contiguous
            np.testing.assert_array_equal(diag, ref)          # NaN at the same places, values bitwise
            assert np.isnan(ref).any() and np.isfinite(ref).any()
    # the log info is the one of term_tables
    lines = []
    chain.compose(terms, *args, log_lines=lines)
    for term, info in lines:
        assert info == chain.term_tables(term, *args)[2]


def test_diag_table_only_for_nearest_diagonal_terms():
    term = _terms()[1]
    args = (0, np.array([0.0, 10.0]), FREQS, DATA_ANTS)
    assert chain.diag_table(term, *args) is not None
    for mode in ("linear", "cubic"):
        t = chain.LoadedTerm(term.key, term.jones_type, term.sets, "nearest_time", mode, None)
        assert chain.diag_table(t, *args) is None
    d = chain.LoadedTerm("D", "D", term.sets, "nearest_time", "nearest", None)
    assert chain.diag_table(d, *args) is None
