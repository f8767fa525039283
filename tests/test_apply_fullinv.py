"""The six-term apply's kernel (issue 16): :func:`alakazam.jones.algebra.correct_full_inv` with the
inverse table of :func:`~alakazam.jones.algebra.full_inverse_table` (one 2x2 inverse per time, antenna
and channel) against :func:`~alakazam.jones.algebra.correct_full` (the inverse per visibility): the
same values to the last bit and the same flags, with singular, NaN, infinite and zero Jones matrices,
in place and out of place."""

import numpy as np
import pytest

from alakazam.jones import algebra

RNG = np.random.default_rng(16)


def _crandn(*shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("in_place", [False, True])
def test_correct_full_inv_equals_correct_full(dtype, in_place):
    n_t, n_ant, n_chan, n_row = 3, 5, 6, 200
    j = _crandn(n_t, n_ant, n_chan, 2, 2)
    pick = RNG.random((n_t, n_ant, n_chan))
    j[pick < 0.04] = np.nan                                       # flagged solution
    j[(pick >= 0.04) & (pick < 0.08)] = 0                         # zero matrix
    j[(pick >= 0.08) & (pick < 0.1), 0, 0] = np.inf
    j[(pick >= 0.1) & (pick < 0.12), 1, 1] = complex(np.nan, 1.0)
    sing = (pick >= 0.12) & (pick < 0.16)                          # singular: rows proportional
    j[sing, 1, :] = 2.0 * j[sing, 0, :]
    j[(pick >= 0.16) & (pick < 0.2)] *= 1e150                      # huge but finite determinant? (overflows)
    data = _crandn(n_row, n_chan, 4).astype(dtype)
    tidx = RNG.integers(0, n_t, n_row)
    a1 = RNG.integers(0, n_ant, n_row)
    a2 = RNG.integers(0, n_ant, n_row)
    ref = np.empty_like(data)
    ref_bad = np.zeros(data.shape, bool)
    ref_bad[::7] = True                                            # pre-set flags are never cleared
    algebra.correct_full(data, j, tidx, a1, a2, ref, ref_bad)
    inv, ok = algebra.full_inverse_table(j)
    bad = np.zeros(data.shape, bool)
    bad[::7] = True
    src = data.copy()
    out = src if in_place else np.empty_like(data)
    n = algebra.correct_full_inv(src, inv, ok, tidx, a1, a2, out, bad)
    np.testing.assert_array_equal(out, ref)                        # bit-identical, NaN where ref has NaN
    np.testing.assert_array_equal(bad, ref_bad)
    bad0 = np.zeros(data.shape, bool)
    algebra.correct_full(data, j, tidx, a1, a2, np.empty_like(data), bad0)
    assert n == int(bad0.sum()) > 0
    assert not ok.all() and ok.any()
    assert np.isnan(inv[~ok]).all()
    # the flags: exactly the samples whose antenna pair has a singular or non-finite matrix
    okrow = ok[tidx, a1] & ok[tidx, a2]                            # (row, chan)
    np.testing.assert_array_equal(bad0, np.repeat(~okrow[..., None], 4, axis=2))


@pytest.mark.parametrize("which", ["dsp", "dp", "sp", "ds", "p"])
def test_compose_inverse_table_equals_numpy_composition(which):
    """diag(d) S P composed and inverted in one kernel == numpy's diag[..., :, None] * (S @ P) then
    full_inverse_table (the former apply code), to 1e-12 relative, same validity mask."""
    n_t, n_ant, n_chan = 3, 4, 5
    d = _crandn(n_t, n_ant, n_chan, 2) if "d" in which else None
    s = _crandn(n_t, n_ant, n_chan, 2, 2) if "s" in which else None
    p = _crandn(n_t, n_ant, 2, 2) if "p" in which else None
    if d is not None:
        d[0, 1, 2, 0] = np.nan                          # a flagged diagonal solution
    if s is not None:
        s[1, 2, 3] = 0                                  # singular leakage matrix
    J = np.broadcast_to(np.eye(2), (n_t, n_ant, n_chan, 2, 2)).astype(complex)
    if s is not None:
        J = s
    if p is not None:
        J = np.einsum("...ij,...jk->...ik", J, np.broadcast_to(p[:, :, None], (n_t, n_ant, n_chan, 2, 2)))
    if d is not None:
        J = d[..., :, None] * J
    ref, ref_ok = algebra.full_inverse_table(J)
    inv, ok = algebra.compose_inverse_table(n_t, n_ant, n_chan, d, s, p)
    np.testing.assert_array_equal(ok, ref_ok)
    assert (~ok).sum() == ("d" in which) + ("s" in which)
    np.testing.assert_allclose(inv[ok], ref[ok], rtol=1e-12, atol=0)
    assert np.isnan(inv[~ok]).all()


def test_merge_flags_counts_new_samples_only():
    flag = RNG.random((50, 7, 4)) < 0.3
    bad = RNG.random((50, 7, 4)) < 0.2
    want = flag | bad
    n_want = int((bad & ~flag).sum())
    assert algebra.merge_flags(flag, bad) == n_want > 0
    np.testing.assert_array_equal(flag, want)
