"""The solve's fused accumulation with a sky table of one channel (P alone, issue 16) against the same P
broadcast over every channel (the former table), with flagged (NaN) P: the data and weight sums equal
to the last bit (P does not enter them) and the same flags; the model sums equal to rounding (the
one-channel path -- averaging._accumulate_hands -- evaluates M' = P_a M P_b^H from 16 coefficients per
row, the broadcast one as a 2x2 sandwich per channel: the same terms summed in another order), and so
are the per-row weight totals (summed correlation by correlation there, channel by channel here)."""

import os
import sys

import numpy as np

from alakazam.core import averaging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_kernels import baseline_index  # noqa: E402  (tests/reference_kernels.py)

N_ANT, N_CHAN = 5, 9


def test_one_channel_sky_equals_broadcast_sky():
    rng = np.random.default_rng(16)
    n_row, n_t = 150, 4
    a1 = rng.integers(0, N_ANT, n_row)
    a2 = (a1 + rng.integers(1, N_ANT, n_row)) % N_ANT          # cross-correlations, both orientations
    tidx = rng.integers(0, n_t, n_row)

    def cplx(*s):
        return rng.standard_normal(s) + 1j * rng.standard_normal(s)

    data = cplx(n_row, N_CHAN, 4).astype(np.complex64)
    model = cplx(n_row, N_CHAN, 4).astype(np.complex64)
    weight = rng.uniform(0.5, 2.0, (n_row, N_CHAN, 4)).astype(np.float32)
    flag = rng.random((n_row, N_CHAN, 4)) < 0.1
    diag = cplx(n_t, N_ANT, N_CHAN, 2)
    p = cplx(n_t, N_ANT, 1, 2, 2)
    p[1, 2] = np.nan                                          # a flagged parallactic-angle entry
    row_bl, _, _ = baseline_index(a1, a2, N_ANT)
    sbin = rng.integers(0, 2, n_row)
    fsamp = np.arange(N_CHAN)
    out = []
    for sky in (p, np.broadcast_to(p, (n_t, N_ANT, N_CHAN, 2, 2))):
        shape = (2, N_ANT * (N_ANT - 1) // 2, N_CHAN, 4)
        acc = (np.zeros(shape, complex), np.zeros(shape, complex), np.zeros(shape), np.zeros(n_row))
        averaging.accumulate_corrected(*acc, data, model, flag, weight, np.arange(n_row), tidx, a1, a2,
                                       sbin, row_bl, fsamp, diag=diag, sky=sky)
        out.append(acc)
    (v0, m0, w0, r0), (v1, m1, w1, r1) = out
    np.testing.assert_array_equal(v0, v1)
    np.testing.assert_array_equal(w0, w1)
    np.testing.assert_allclose(r0, r1, rtol=1e-14)
    np.testing.assert_allclose(m0, m1, rtol=1e-13, atol=1e-13 * np.abs(m1).max())
    assert (out[0][2] > 0).any() and np.isfinite(out[0][0]).all()
    # the flagged P removes the samples of (t=1, antenna 2): fewer weights than without the flag
    assert out[0][3][(tidx == 1) & ((a1 == 2) | (a2 == 2))].sum() == 0
