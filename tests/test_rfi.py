"""MAD RFI flagging: injected spikes found, Gaussian noise left alone, per-row determinism."""

import numpy as np
import pytest

from alakazam.core import rfi
from alakazam.errors import AlakazamError


def _noise(rng, n_row, n_chan, amp=10.0, sigma=1.0):
    return (amp + sigma * (rng.standard_normal((n_row, n_chan, 4))
                           + 1j * rng.standard_normal((n_row, n_chan, 4)))).astype(np.complex64)


def test_clean_gaussian_noise_flags_little():
    rng = np.random.default_rng(1)
    data = _noise(rng, 2000, 64)                                # 512k samples, |V| ~ N(10, 1)
    out = rfi.mad_flag(data, None, np.zeros(data.shape, bool), 5.0)
    # Gaussian two-sided 5 sigma tail is 5.7e-7; with MAD estimated from 64 channels a few e-5
    assert out.mean() < 1e-3


def test_injected_spikes_found_per_correlation():
    rng = np.random.default_rng(2)
    data = _noise(rng, 50, 32)
    spikes = np.zeros(data.shape, bool)
    rows = rng.integers(0, 50, 40)
    chans = rng.integers(0, 32, 40)
    corrs = rng.integers(0, 4, 40)
    spikes[rows, chans, corrs] = True
    data[spikes] += 30.0                                        # 30 sigma
    flag = np.zeros(data.shape, bool)
    flag[0, :3, 0] = True                                       # existing flags kept
    flag_before = flag.copy()
    out = rfi.mad_flag(data, None, flag, 5.0)
    assert np.all(out[spikes])                                   # every spike, only its corr
    assert np.all(out[flag])
    assert (out & ~spikes & ~flag).sum() <= 2                    # essentially no false positives
    np.testing.assert_array_equal(flag, flag_before)            # input not modified


def test_model_ratio_removes_spectrum():
    rng = np.random.default_rng(3)
    n_chan = 64
    spectrum = np.linspace(1.0, 20.0, n_chan)[None, :, None]    # steep source spectrum
    model = np.broadcast_to(spectrum, (20, n_chan, 4)).astype(np.complex64)
    data = (model * (1 + 0.01 * (rng.standard_normal(model.shape)
                                 + 1j * rng.standard_normal(model.shape)))).astype(np.complex64)
    data[5, 10, 2] *= 1.5
    flag = np.zeros(data.shape, bool)
    with_model = rfi.mad_flag(data, model, flag, 5.0)
    assert with_model[5, 10, 2] and with_model.sum() <= 3
    assert rfi.mad_flag(data, None, flag, 5.0).sum() == 0       # |V| alone: spectrum widens MAD


def test_disabled_few_channels_nan_and_chunking():
    rng = np.random.default_rng(4)
    data = _noise(rng, 12, 16)
    data[3, 7, 1] = 100.0
    flag = np.zeros(data.shape, bool)
    for thr in (0, -1, None):
        np.testing.assert_array_equal(rfi.mad_flag(data, None, flag, thr), flag)
    # fewer than 4 unflagged channels: left unchanged
    flag[3, :, 1] = True
    flag[3, 5:8, 1] = False
    out = rfi.mad_flag(data, None, flag, 3.0)
    np.testing.assert_array_equal(out[3, :, 1], flag[3, :, 1])
    # unflagged NaN gets flagged and does not poison the statistics of that row
    data[6, 2, 0] = np.nan
    data[6, 9, 0] = 100.0
    out = rfi.mad_flag(data, None, flag, 5.0)
    assert out[6, 2, 0] and out[6, 9, 0]
    # per-row statistics: chunking rows gives identical flags
    parts = [rfi.mad_flag(data[lo:hi], None, flag[lo:hi], 5.0) for lo, hi in [(0, 5), (5, 6), (6, 12)]]
    np.testing.assert_array_equal(np.concatenate(parts), out)
    with pytest.raises(AlakazamError, match="model"):
        rfi.mad_flag(data, data[:2], flag, 5.0)


def _reference_mad_flag(data, model, flag, threshold):
    """numpy per (row, corr): x = |V| / |M| (|V| where |M| = 0), np.median and MAD of every s-th usable
    channel (s = max(1, n_usable // MAX_STAT_SAMPLES))."""
    out = flag.copy()
    for row in range(data.shape[0]):
        for corr in range(data.shape[2]):
            v = np.abs(data[row, :, corr].astype(complex))
            m = np.abs(model[row, :, corr].astype(complex)) if model is not None else np.zeros_like(v)
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(m > 0, v / np.where(m > 0, m, 1), v)
            ok = ~flag[row, :, corr] & np.isfinite(x)
            out[row, ~flag[row, :, corr] & ~np.isfinite(x), corr] = True
            if ok.sum() < rfi.MIN_CHANNELS:
                continue
            xo = x[ok]                                         # every s-th usable channel
            xo = xo[::max(1, len(xo) // rfi.MAX_STAT_SAMPLES)]
            med = np.median(xo)
            sigma = rfi.MAD_TO_SIGMA * np.median(np.abs(xo - med))
            if sigma > 0:
                out[row, ok & (np.abs(x - med) > threshold * sigma), corr] = True
    return out


@pytest.mark.parametrize("with_model, n_row, n_chan", [(False, 300, 37), (True, 300, 37), (True, 12, 1100),
                                                       (False, 12, 600)])
def test_quickselect_statistics_match_numpy_median(with_model, n_row, n_chan):
    """Statistics over all usable channels (37) and over every s-th of them (1100: s = 3 or 4; 600:
    s = 2 where more than 511 are usable, 1 below): the flags of the numpy definition."""
    rng = np.random.default_rng(5)
    data = _noise(rng, n_row, n_chan, amp=3.0)
    data[rng.random(data.shape) < 0.02] *= 8                   # outliers
    data[rng.random(data.shape) < 0.005] = np.nan
    data[7, :, 2] = 1.0                                        # MAD = 0: row left alone
    model = _noise(rng, n_row, n_chan, amp=5.0) if with_model else None
    if with_model:
        model[rng.random(model.shape) < 0.01] = 0              # |M| = 0: |V| used
    flag = rng.random(data.shape) < 0.1
    flag[3, :, 1] = True                                       # even and odd counts of usable channels
    flag[3, :4, 1] = False
    flag[4, :, 0] = True
    flag[4, :5, 0] = False
    out = rfi.mad_flag(data, model, flag, 3.0)
    ref = _reference_mad_flag(data, model, flag, 3.0)
    # x is sqrt(|V|^2/|M|^2) here, |V|/|M| in the reference: only a sample within rounding of the
    # threshold could differ
    assert (out != ref).sum() <= 1, np.argwhere(out != ref)
    assert out.sum() > flag.sum() + 100


def test_median_select_exact_on_structured_inputs():
    """The in-place quickselect median equals np.median on sorted, V-shaped (deviations of smooth
    spectra), tied and small inputs, odd and even lengths."""
    rng = np.random.default_rng(6)
    cases = []
    for n in (1, 2, 3, 24, 25, 26, 97, 1000, 1001):
        x = np.sort(rng.standard_normal(n))
        cases += [x, x[::-1].copy(), np.abs(x - np.median(x)), rng.integers(0, 3, n).astype(float),
                  np.full(n, 2.5), rng.standard_normal(n)]
    for x in cases:
        a = x.copy()
        assert rfi._median(a, len(a)) == np.median(x)
        np.testing.assert_array_equal(np.sort(a), np.sort(x))       # a permutation of the input


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("v_exp, m_exp", [(66, 66), (66, 0), (0, -82), (-75, 0), (-75, -75), (0, 64)])
def test_flags_scale_free_across_float32_range(dtype, v_exp, m_exp):
    """x = |V| / |M| is scale-free: DATA (MODEL_DATA) times a power of two (exact) flags the same
    samples, also where |V|^2 or |M|^2 leaves float32's normal range (|V| ~ 7e19, |M| ~ 2e-25, |V| ~
    3e-23) while x itself stays within it -- the squares must not overflow or underflow."""
    from alakazam.core import cellflags

    rng = np.random.default_rng(11)
    data = _noise(rng, 16, 40).astype(dtype)
    data[:, 7] *= 5.0                                           # a persistent RFI channel
    data[3, 20, 0] *= 4.0                                       # a spike
    model = np.full(data.shape, 10.0, dtype)
    flag = np.zeros(data.shape, bool)
    ref = rfi.mad_flag(data, model, flag, 5.0)
    assert ref[:, 7].all() and ref[3, 20, 0]
    d2, m2 = data * dtype(2.0 ** v_exp), model * dtype(2.0 ** m_exp)
    np.testing.assert_array_equal(rfi.mad_flag(d2, m2, flag, 5.0), ref)
    np.testing.assert_array_equal(rfi.mad_flag(d2, None, flag, 5.0), rfi.mad_flag(data, None, flag, 5.0))
    x = np.empty((40, 4), np.float32)
    rfi.row_ratios(d2[3], m2[3], True, x)
    want = np.abs(d2[3].astype(np.complex128)) / np.abs(m2[3].astype(np.complex128))
    np.testing.assert_allclose(x, want.astype(np.float32), rtol=1e-6)
    group, ant1, ant2 = np.zeros(16, np.int64), np.zeros(16, np.int64), np.arange(1, 17)
    ref_p = cellflags.flag_persistent(data, model, flag, group, ant1, ant2, [0, 3], 5.0)[0]
    assert ref_p[:, 7].all()
    np.testing.assert_array_equal(cellflags.flag_persistent(d2, m2, flag, group, ant1, ant2, [0, 3], 5.0)[0],
                                  ref_p)


@pytest.mark.parametrize("scale", [1.0, 2.0 ** 66, 2.0 ** -75])
def test_row_ratios_with_nan_data_or_model_equal_the_float64_definition(scale):
    """NaN DATA gives NaN, a NaN MODEL sample |V| (not > 0), at every scale (a NaN does not by itself
    send the row to the float64 recompute, whose values are the same)."""
    rng = np.random.default_rng(12)
    d = (_noise(rng, 1, 16)[0] * np.complex64(scale))
    m = np.full(d.shape, 10.0, np.complex64)
    d[3, 1] = np.nan
    m[4, 2] = np.nan
    m[5, 0] = 0
    x = np.empty(d.shape, np.float32)
    rfi.row_ratios(d, m, True, x)
    d64, m64 = d.astype(np.complex128), m.astype(np.complex128)
    m2 = np.abs(m64) ** 2
    want = np.where(m2 > 0, np.abs(d64) / np.where(m2 > 0, np.sqrt(m2), 1), np.abs(d64))
    np.testing.assert_allclose(x, want.astype(np.float32), rtol=1e-6, equal_nan=True)
    rfi.row_ratios(d, m, False, x)
    np.testing.assert_allclose(x, np.abs(d64).astype(np.float32), rtol=1e-6, equal_nan=True)


def test_one_sided_row_mad_keeps_a_rolled_off_edge():
    """mad_flag(upper=True) -- the solve-time per-row MAD (rfi._mad_flag_rows) -- flags only samples
    above the row's median: a band edge rolled off to 0.5 (far below the row's median in MAD sigmas at
    this SNR) is kept, RFI above it still flagged; the two-sided test (akflag mode='mad') flags both."""
    rng = np.random.default_rng(3)
    n_row, n_chan = 20, 64
    shape = np.ones(n_chan)
    shape[:6] = shape[-6:] = 0.5
    noise = 0.01 * (rng.normal(size=(n_row, n_chan, 2)) + 1j * rng.normal(size=(n_row, n_chan, 2)))
    data = (shape[None, :, None] * (1 + noise)).astype(np.complex64)
    data[:, 30] *= 3.0                                          # RFI-like power in one channel
    flag = np.zeros(data.shape, bool)
    one = rfi.mad_flag(data, None, flag, 5.0, upper=True)
    two = rfi.mad_flag(data, None, flag, 5.0)
    edge = np.r_[0:6, 58:64]
    assert one[:, 30].all() and two[:, 30].all()
    assert not one[:, edge].any() and two[:, edge].all()
    assert one.sum() == n_row * 2                               # nothing else
