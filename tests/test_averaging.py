"""Cell averaging on the (row, chan, corr) layout against a numpy np.add.at reference."""

import numpy as np
import pytest

from alakazam.core import averaging
from alakazam.errors import AlakazamError

RNG = np.random.default_rng(7)
N_ANT, N_CHAN, N_TBIN, N_FBIN = 5, 12, 3, 4
N_BL = N_ANT * (N_ANT - 1) // 2


def _chunk(n_row=60):
    a1 = RNG.integers(0, N_ANT - 1, n_row)
    a2 = a1 + 1 + RNG.integers(0, N_ANT - 1 - a1)
    data = (RNG.standard_normal((n_row, N_CHAN, 4)) + 1j * RNG.standard_normal((n_row, N_CHAN, 4))
            ).astype(np.complex64)
    model = (RNG.standard_normal((n_row, N_CHAN, 4)) + 1j * RNG.standard_normal((n_row, N_CHAN, 4))
             ).astype(np.complex64)
    weight = RNG.uniform(0.5, 2.0, (n_row, N_CHAN, 4)).astype(np.float32)
    flag = RNG.random((n_row, N_CHAN, 4)) < 0.2
    data[flag & (RNG.random(flag.shape) < 0.5)] = np.nan      # flagged samples may carry NaN
    tbin = RNG.integers(-1, N_TBIN, n_row)                     # -1 = skipped row
    times = 5.0e9 + 10.0 * tbin + RNG.uniform(0, 10, n_row)
    return data, model, weight, flag, tbin, a1, a2, times


# non-contiguous channel -> bin map, channel 5 unused
CHAN_FBIN = np.array([0, 1, 2, 3, 0, -1, 2, 3, 0, 1, 2, 3])


def _reference(data, model, weight, flag, tbin, row_bl, times, chan_fbin=CHAN_FBIN):
    shape = (N_TBIN, max(chan_fbin) + 1, N_BL, 4)
    vs, ms, ws = np.zeros(shape, complex), np.zeros(shape, complex), np.zeros(shape)
    ts = np.zeros((N_TBIN, 2))
    w = np.where(flag, 0.0, weight.astype(float))
    for row in range(data.shape[0]):
        if tbin[row] < 0 or row_bl[row] < 0:
            continue
        for chan in range(N_CHAN):
            fb = chan_fbin[chan]
            if fb < 0:
                continue
            for c in range(4):
                if w[row, chan, c] > 0:
                    vs[tbin[row], fb, row_bl[row], c] += w[row, chan, c] * complex(data[row, chan, c])
                    ms[tbin[row], fb, row_bl[row], c] += w[row, chan, c] * complex(model[row, chan, c])
                    ws[tbin[row], fb, row_bl[row], c] += w[row, chan, c]
                    ts[tbin[row]] += w[row, chan, c] * np.array([times[row], 1.0])
    return vs, ms, ws, ts


def test_baseline_index():
    row_bl, b1, b2 = averaging.baseline_index([0, 1, 3, 2, 2, 4], [1, 0, 4, 2, 3, 7], 5)
    assert len(b1) == 10 and np.all(b1 < b2)
    np.testing.assert_array_equal(row_bl, [0, 0, 9, -1, 7, -1])
    np.testing.assert_array_equal([b1[9], b2[9], b1[7], b2[7]], [3, 4, 2, 3])


@pytest.mark.parametrize("chan_fbin", [CHAN_FBIN, np.zeros(N_CHAN, int)], ids=["4fbin", "1fbin_rowsplit"])
def test_average_cells_matches_reference(chan_fbin):
    data, model, weight, flag, tbin, a1, a2, times = _chunk()
    row_bl, _, _ = averaging.baseline_index(a1, a2, N_ANT)
    n_fbin = max(chan_fbin) + 1
    sums = averaging.average_cells(data, model, weight, flag, tbin, row_bl, chan_fbin,
                                   N_TBIN, n_fbin, N_BL, times=times)
    ref = _reference(data, model, weight, flag, tbin, row_bl, times, chan_fbin)
    for got, want in zip(sums, ref):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert sums[0].dtype == np.complex128 and sums[2].dtype == np.float64
    vis, mod, w = averaging.finalize_cells(sums)
    good = ref[2] > 0
    assert (~good).any()                                        # some empty cells exist
    np.testing.assert_allclose(vis[good], ref[0][good] / ref[2][good], rtol=1e-12)
    np.testing.assert_allclose(mod[good], ref[1][good] / ref[2][good], rtol=1e-12)
    assert np.all(vis[~good] == 0) and np.all(mod[~good] == 0) and np.all(w[~good] == 0)
    assert np.all(np.isfinite(vis))


def test_chunked_equals_one_shot():
    data, model, weight, flag, tbin, a1, a2, times = _chunk(90)
    row_bl, _, _ = averaging.baseline_index(a1, a2, N_ANT)
    args = (N_TBIN, N_FBIN, N_BL)
    one = averaging.average_cells(data, model, weight, flag, tbin, row_bl, CHAN_FBIN, *args, times=times)
    sums = None
    for lo, hi in [(0, 7), (7, 40), (40, 41), (41, 90)]:
        sums = averaging.average_cells(data[lo:hi], model[lo:hi], weight[lo:hi], flag[lo:hi], tbin[lo:hi],
                                       row_bl[lo:hi], CHAN_FBIN, *args, times=times[lo:hi], sums=sums)
    for a, b in zip(one, sums):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


def test_row_weights_broadcast_and_time_centroid():
    data, model, weight, flag, tbin, a1, a2, times = _chunk()
    row_bl, _, _ = averaging.baseline_index(a1, a2, N_ANT)
    w_row = weight[:, 0, :]                                     # (row, corr) as MS WEIGHT
    s_row = averaging.average_cells(data, model, w_row, flag, tbin, row_bl, CHAN_FBIN,
                                    N_TBIN, N_FBIN, N_BL, times=times)
    s_full = averaging.average_cells(data, model, np.repeat(w_row[:, None], N_CHAN, 1), flag, tbin, row_bl,
                                     CHAN_FBIN, N_TBIN, N_FBIN, N_BL, times=times)
    for a, b in zip(s_row, s_full):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    centroid = s_row[3][:, 0] / s_row[3][:, 1]
    for tb in range(N_TBIN):                                    # centroid inside its 10 s bin
        assert 5.0e9 + 10 * tb <= centroid[tb] <= 5.0e9 + 10 * (tb + 1)


def test_legacy_accumulate_agrees():
    data, model, weight, flag, tbin, a1, a2, times = _chunk()
    row_bl, _, _ = averaging.baseline_index(a1, a2, N_ANT)
    f = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    acc = averaging.new_accumulators(N_TBIN, N_FBIN, N_BL)
    w = np.where(flag, 0.0, weight)
    averaging.accumulate(acc, np.nan_to_num(data), model, w, tbin, row_bl, f)
    s = averaging.average_cells(data, model, weight, flag, tbin, row_bl, f, N_TBIN, N_FBIN, N_BL)
    np.testing.assert_allclose(acc.vis_sum, s[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.w_sum, s[2], rtol=1e-12)


def test_shape_errors():
    data, model, weight, flag, tbin, a1, a2, times = _chunk(4)
    with pytest.raises(AlakazamError, match="weight"):
        averaging.average_cells(data, model, weight[:, :3], flag, tbin, a1, CHAN_FBIN, N_TBIN, N_FBIN, N_BL)
    with pytest.raises(AlakazamError, match="chan_fbin"):
        averaging.average_cells(data, model, weight, flag, tbin, a1, CHAN_FBIN + 5, N_TBIN, N_FBIN, N_BL)
