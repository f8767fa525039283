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
