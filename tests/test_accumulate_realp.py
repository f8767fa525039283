"""The accumulation kernels with a real P (linear feeds; averaging's "Real P coefficients": the model's
P_a M P_b^H from the real parts of the coefficients) give the bits of the complex products they
replace, also where the model has zeros, -0, inf or NaN (there the complex products are taken; a NaN
compared by its place).
Each (bin, baseline) element here gets one row, so that the expected sums are a plain loop over the
samples in CPython complex arithmetic -- (a c - b d, a d + b c), numba's complex multiply -- in the
kernels' order: the hands kernel (K, G, KC, CP; per channel and full band) forms M' as
``0j + c0 M0 + c1 M1 + ...``, the general one (D, all correlations) as ``c0 M0 + c1 M1 + c2 M2 + c3 M3``."""

import os
import sys

import numpy as np
import pytest

from alakazam.core import averaging
from alakazam.jones.parang import parang_matrices

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_kernels import baseline_index  # noqa: E402  (tests/reference_kernels.py)

N_ANT, N_CHAN = 5, 7
SWAP = (0, 2, 1, 3)


def _case():
    rng = np.random.default_rng(161)
    a1, a2 = np.triu_indices(N_ANT, 1)
    flip = rng.random(len(a1)) < 0.5                  # both orientations
    a1, a2 = np.where(flip, a2, a1), np.where(flip, a1, a2)
    n_row = len(a1)
    cplx = rng.standard_normal((n_row, N_CHAN, 4)) + 1j * rng.standard_normal((n_row, N_CHAN, 4))
    data = cplx.astype(np.complex64)
    model = (rng.standard_normal((n_row, N_CHAN, 4))
             + 1j * rng.standard_normal((n_row, N_CHAN, 4))).astype(np.complex64)
    model[0, 1, 0] = complex(np.inf, 1.0)             # non-finite model values: the complex products
    model[1, 2, 3] = complex(0.5, np.nan)
    model[2, 3, 1] = complex(-np.inf, 0.0)
    model[3, 4] = 0                                   # zeros and -0 (signs of zero parts)
    model[4, 5] = complex(-0.0, -0.0)
    model[5, :, 2] = complex(1.0, -0.0)
    weight = rng.uniform(0.5, 2.0, (n_row, N_CHAN, 4)).astype(np.float32)
    flag = rng.random((n_row, N_CHAN, 4)) < 0.1
    tidx = np.zeros(n_row, np.int64)
    chi = rng.uniform(-np.pi, np.pi, (1, N_ANT))
    p = np.ascontiguousarray(parang_matrices(chi, "linear")[:, :, None])   # (1, n_ant, 1, 2, 2), real
    assert (p.imag == 0).all()
    return data, model, flag, weight, tidx, a1, a2, p


def _coef(p, a, b):
    s_a, s_b = p[0, a, 0], p[0, b, 0]
    return [[complex(s_a[i, k]) * complex(np.conj(s_b[j, m])) for k in range(2) for m in range(2)]
            for i in range(2) for j in range(2)]


def _bits(x):
    return np.ascontiguousarray(x).view(np.int64)


@pytest.mark.parametrize("all_corr", [False, True])
@pytest.mark.parametrize("full_band", [False, True])
@pytest.mark.parametrize("hands", ["parallel", "cross"])
def test_real_p_model_sums_bit_for_bit(all_corr, full_band, hands):
    data, model, flag, weight, tidx, a1, a2, p = _case()
    n_row = len(a1)
    row_bl, _, _ = baseline_index(a1, a2, N_ANT)
    n_bl = N_ANT * (N_ANT - 1) // 2
    use = np.array([1, 0, 0, 1] if hands == "parallel" else [0, 1, 1, 0], bool)
    if all_corr:
        use = np.ones(4, bool)
    fsamp = np.zeros(N_CHAN, np.int64) if full_band else np.arange(N_CHAN)
    n_fs = 1 if full_band else N_CHAN
    shape = (n_row, n_bl, n_fs, 4)                    # one bin per row: one row per element
    vis, mod, w, w_row = np.zeros(shape, complex), np.zeros(shape, complex), np.zeros(shape), np.zeros(n_row)
    averaging.accumulate_corrected(vis, mod, w, w_row, data, model, flag, weight, np.arange(n_row), tidx,
                                   a1, a2, np.arange(n_row), row_bl, fsamp, sky=p, corr_use=use,
                                   all_corr=all_corr)
    expect = np.zeros(shape, complex)
    for r in range(n_row):
        swap = a1[r] > a2[r]
        coef = _coef(p, a1[r], a2[r])
        b = row_bl[r]
        part = {}
        for chan in range(N_CHAN):
            ms = {}
            for c in np.flatnonzero(use):
                src = SWAP[c] if swap else c
                wt = float(weight[r, chan, src])
                if flag[r, chan, src] or not wt > 0:
                    continue
                mm = [complex(model[r, chan, k]) for k in range(4)]
                cf = coef[src]
                if all_corr:
                    m = cf[0] * mm[0] + cf[1] * mm[1] + cf[2] * mm[2] + cf[3] * mm[3]
                else:
                    m = 0j
                    for k in range(4):
                        m += cf[k] * mm[k]
                ms[c] = wt * (m.conjugate() if swap else m)
            if all_corr and len(ms) < 4:
                continue
            for c, x in ms.items():
                if full_band:
                    part[c] = part.get(c, 0j) + x
                else:
                    expect[r, b, chan, c] += x
        for c, x in part.items():
            expect[r, b, 0, c] += x
    assert np.isnan(expect).any() and (np.abs(expect) > 0).any()      # the non-finite samples are in
    # the bits of every number (a NaN's sign and payload are the hardware's, not CPython's: its place)
    fin = np.isfinite(expect.real) & np.isfinite(expect.imag)
    np.testing.assert_array_equal(_bits(mod[fin]), _bits(expect[fin]))
    for part in ("real", "imag"):
        got, exp = getattr(mod, part), getattr(expect, part)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
        np.testing.assert_array_equal(got[np.isinf(exp)], exp[np.isinf(exp)])
