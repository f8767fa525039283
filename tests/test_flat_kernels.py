"""The per-row kernels of the solve-time flags take one flat (vectorised) loop over a row's samples
(C-contiguous DATA and MODEL; the public functions copy a strided input, such as a channel selection's
views, to C order first): strided and C-contiguous inputs give exactly the same values
(rfi.row_ratios: the ratios x; cellflags.flag_bad_values: the flags and their count), hazards included
(NaN, zeros, infinities, values beyond float32's normal range)."""

import numpy as np
import pytest

from alakazam.core import cellflags, rfi

pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")


def _rows(seed, n_row=40, n_chan=64, n_corr=4):
    rng = np.random.default_rng(seed)
    shape = (n_row, n_chan, n_corr)
    d = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    m = (1 + 0.1 * rng.standard_normal(shape) + 0j).astype(np.complex64)
    d[rng.random(shape) < 0.02] = np.nan
    d[rng.random(shape) < 0.02] = 0
    d[3, :, :] = 0                                        # a dropout row
    d[4, 10:14, :] = 0                                    # dropout channels
    m[rng.random(shape) < 0.02] = np.inf
    m[5, 20:22, :] = 0                                    # model all zero in two channels
    d[6] *= np.float32(1e25)                              # beyond float32's normal squares
    m[7] *= np.float32(1e-25)                            # (inf * 1e-25: inf + nan j, still bad)
    w = rng.uniform(0.5, 2, (n_row, n_corr)).astype(np.float32)
    w[8, 1] = -1
    w[9, 2] = np.nan
    f = rng.random(shape) < 0.05
    return d, m, w, f


def _strided(a):
    """The same values as a view whose rows are not C-contiguous (every other channel of a bigger array)."""
    big = np.zeros((a.shape[0], 2 * a.shape[1], a.shape[2]), a.dtype)
    big[:, ::2] = a
    return big[:, ::2]


@pytest.mark.parametrize("use_model", [True, False])
def test_row_ratios_flat_equals_nested(use_model):
    d, m, _, _ = _rows(1)
    dc, mc = d, m
    ds, ms = _strided(d), _strided(m)
    assert dc[0].flags.c_contiguous and not ds[0].flags.c_contiguous
    for r in range(len(d)):
        xa = np.empty(dc[r].shape, np.float32)
        xb = np.empty(dc[r].shape, np.float32)
        rfi.row_ratios(dc[r], mc[r], use_model, xa)
        rfi.row_ratios(ds[r], ms[r], use_model, xb)
        np.testing.assert_array_equal(xa, xb)
        # the float64 definition (within float32 rounding) where it is finite
        v = np.abs(dc[r].astype(np.complex128))
        mm = np.abs(mc[r].astype(np.complex128))
        with np.errstate(all="ignore"):
            ref = np.where(mm > 0, v / mm, v) if use_model else v
        ok = np.isfinite(ref) & (ref < 1e38) & np.isfinite(mc[r])     # (a NaN model part: x = |V|)
        np.testing.assert_allclose(xa[ok], ref[ok], rtol=1e-6, err_msg=f"row {r}")


def test_bad_values_flat_equals_nested():
    d, m, w, f = _rows(2)
    wb = np.broadcast_to(w[:, None, :], d.shape)
    a, na = cellflags.flag_bad_values(d, m, wb, f)
    b, nb = cellflags.flag_bad_values(_strided(d), _strided(m), wb, _strided(f))
    np.testing.assert_array_equal(a, b)
    assert na == nb > 0
    assert a[3].all() and a[4, 10:14].all() and a[5, 20:22].all() and a[8, :, 1].all() and a[9, :, 2].all()
    # without a model
    a, na = cellflags.flag_bad_values(d, None, wb, f)
    b, nb = cellflags.flag_bad_values(_strided(d), None, wb, _strided(f))
    np.testing.assert_array_equal(a, b)
    assert na == nb
    assert not a[5, 20:22].all()          # the all-zero model is not a reason without a model



@pytest.mark.parametrize("n_chan", [1, 4, 8])
def test_bad_values_of_narrow_rows_equal_the_flat_pass(n_chan):
    """flag_bad_values takes nested loops on rows of fewer than BAD_ROW_FLAT_MIN samples: a sample's bad
    value depends only on its own channel, so rows of 64 channels cut into rows of ``n_chan`` give
    exactly the flags and the count of the flat pass."""
    d, m, w, f = _rows(3)
    wb = np.ascontiguousarray(np.broadcast_to(w[:, None, :], d.shape))
    assert d.shape[1] * d.shape[2] >= cellflags.BAD_ROW_FLAT_MIN > n_chan * d.shape[2]
    cut = (-1, n_chan, d.shape[2])
    for mm in (m, None):
        a, na = cellflags.flag_bad_values(d, mm, wb, f)
        b, nb = cellflags.flag_bad_values(d.reshape(cut), None if mm is None else mm.reshape(cut),
                                          wb.reshape(cut), f.reshape(cut))
        np.testing.assert_array_equal(b.reshape(a.shape), a)
        assert na == nb > 0


@pytest.mark.parametrize("use_model", [True, False])
def test_fused_ratios_and_codes_equal_the_separate_passes(use_model):
    """The row pass's fused loop (cellflags._ratios_codes, then the float64 redo where it says so) gives
    exactly rfi.flat_row_ratios' x and _bad_row's sample codes, hazards included."""
    d, m, w, f = _rows(11)
    d[10, 5] = np.complex64(3e-25)                        # below float32's normal squares
    m[11, 7] = np.complex64(complex(np.nan, 1))
    n_row, n_chan, n_corr = d.shape
    wb = np.broadcast_to(w[:, None, :], d.shape)
    mm = m if use_model else np.zeros((1, n_chan, n_corr), np.complex64)
    for row in range(n_row):
        d1 = d[row].reshape(-1)
        m1 = mm[row if use_model else 0].reshape(-1)
        x_ref = np.empty(d1.size, np.float32)
        rfi.flat_row_ratios(d1, m1, use_model, x_ref)
        code_ref = np.empty(d1.size, np.uint8)
        cellflags._bad_row(d1, m1, use_model, wb[row], f[row], np.empty((n_chan, n_corr), bool), code_ref,
                           None, row, 0)
        x = np.empty(d1.size, np.float32)
        code = np.empty(d1.size, np.uint8)
        if cellflags._ratios_codes(d1, m1, use_model, x, code):
            rfi._row_ratios64(d1, m1, use_model, x)
        np.testing.assert_array_equal(x.view(np.uint32), x_ref.view(np.uint32))
        np.testing.assert_array_equal(code, code_ref)


@pytest.mark.parametrize("n_corr", [1, 2, 3, 4])
@pytest.mark.parametrize("per_channel_weight", [False, True])
@pytest.mark.parametrize("use_model", [True, False])
def test_bad_values_word_path_equals_the_nested_loops(n_corr, per_channel_weight, use_model):
    """Rows of 4 or 2 correlations decide their bad values on one word per channel
    (cellflags._bad_decide_words); the flags and the count are those of the nested loops
    (cellflags._bad_row_2d, the definition) sample for sample: hazards, flags as read, weights per
    row (broadcast) or per channel (WEIGHT_SPECTRUM), and flag bytes other than 0/1 (numpy: True)."""
    from numba import njit

    @njit
    def nested(d, m, use_model, w, f, out):
        nb = 0
        for r in range(d.shape[0]):
            nb += cellflags._bad_row_2d(d[r], m[r] if use_model else m[0], use_model, w[r], f[r], out[r])
        return nb

    d, m, w, f = (np.ascontiguousarray(a[..., :n_corr]) for a in _rows(20 + n_corr, n_row=60, n_chan=64))
    rng = np.random.default_rng(n_corr)
    if per_channel_weight:
        w = rng.uniform(0.5, 2, d.shape).astype(np.float32)
        w[rng.random(d.shape) < 0.02] = -1
        w[rng.random(d.shape) < 0.02] = np.inf
        w[12, 3:9] = np.nan
    else:
        w = np.broadcast_to(w[:, None, :], d.shape)
    raw = f.view(np.uint8).copy()
    raw[13, 2:6] *= 2                       # True stored as the byte 2
    f = raw.view(np.bool_)
    mm = m if use_model else None
    got, n_got = cellflags.flag_bad_values(d, mm, w, f)
    ref = np.empty(d.shape, bool)
    n_ref = nested(d, m if use_model else np.zeros((1, 1, n_corr), np.complex64), use_model, w, f, ref)
    np.testing.assert_array_equal(got.view(np.uint8), ref.view(np.uint8))     # (0/1 bytes)
    assert n_got == n_ref > 0
    if per_channel_weight:
        assert got[12, 3:9].all()
