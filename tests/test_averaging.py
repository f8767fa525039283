"""Cell averaging on the (row, chan, corr) layout against a numpy np.add.at reference."""

import os
import sys

import numpy as np
import pytest

from alakazam.core import averaging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_kernels as rk  # noqa: E402  (tests/reference_kernels.py)

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


def _random_rows(rng, n_row, n_corr, t_range, flag_frac):
    """a1, a2 (a1 != a2, both orientations), tidx in range(*t_range), DATA and MODEL (complex64), weights
    (0.5-2, float32) and flags (fraction ``flag_frac``) of ``n_row`` rows x N_CHAN x ``n_corr``, drawn
    from ``rng`` in that order."""
    a1 = rng.integers(0, N_ANT, n_row)
    a2 = (a1 + 1 + rng.integers(0, N_ANT - 1, n_row)) % N_ANT
    tidx = rng.integers(*t_range, n_row)
    shape = (n_row, N_CHAN, n_corr)
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    model = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    weight = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    flag = rng.random(shape) < flag_frac
    return a1, a2, tidx, data, model, weight, flag


def test_baseline_index():
    row_bl, b1, b2 = rk.baseline_index([0, 1, 3, 2, 2, 4], [1, 0, 4, 2, 3, 7], 5)
    assert len(b1) == 10 and np.all(b1 < b2)
    np.testing.assert_array_equal(row_bl, [0, 0, 9, -1, 7, -1])
    np.testing.assert_array_equal([b1[9], b2[9], b1[7], b2[7]], [3, 4, 2, 3])


@pytest.mark.parametrize("contiguous", [True, False])
def test_accumulate_matches_reference(contiguous):
    """The running accumulator (the reference path of the fused kernel below) against np loops,
    one call and chunked (any row split gives the same sums), with NaN data on flagged samples."""
    data, model, weight, flag, tbin, a1, a2, times = _chunk()
    row_bl, _, _ = rk.baseline_index(a1, a2, N_ANT)
    f = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]) if contiguous else np.repeat(np.arange(4), 3)
    vs, ms, ws, _ = _reference(np.nan_to_num(data), model, weight, flag, tbin, row_bl, times, chan_fbin=f)
    w = np.where(flag, 0.0, weight)
    acc = rk.new_accumulators(N_TBIN, N_FBIN, N_BL)
    rk.accumulate(acc, np.nan_to_num(data), model, w, tbin, row_bl, f)
    np.testing.assert_allclose(acc.vis_sum, vs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.model_sum, ms, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.w_sum, ws, rtol=1e-12)
    acc2 = rk.new_accumulators(N_TBIN, N_FBIN, N_BL)
    for lo, hi in ((0, 7), (7, 31), (31, 60)):
        rk.accumulate(acc2, np.nan_to_num(data[lo:hi]), model[lo:hi], w[lo:hi], tbin[lo:hi],
                             row_bl[lo:hi], f)
    np.testing.assert_allclose(acc2.vis_sum, acc.vis_sum, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="non-decreasing"):
        rk.accumulate(acc, data, model, w, tbin, row_bl, f[::-1])


def _two_step(data, model, flag, weight, tidx, a1, a2, sbin, row_bl, fsamp, diag, sky, n_sbin, n_fs):
    """The solve flow's former per-chunk path: chain.preapply (correct_diag, corrupt_full), the swap of
    a > b rows on copies, ``np.where(flag, 0, weight)`` and accumulate (tests/reference_kernels.py)."""
    out_flag = flag.copy()
    d = data
    if diag is not None:
        d = np.empty(data.shape, np.complex128)
        rk.correct_diag(data, diag, tidx, a1, a2, d, out_flag)
        # the corrected data's weights: w |g_a,i g_b,j|^2 (c = (i, j) in the row's own orientation)
        ga = np.abs(diag[tidx, a1][..., [0, 0, 1, 1]]) ** 2
        gb = np.abs(diag[tidx, a2][..., [0, 1, 0, 1]]) ** 2
        with np.errstate(invalid="ignore"):
            weight = np.where(out_flag, 0.0, weight * ga * gb)
    m = model
    if sky is not None:
        m = np.empty(model.shape, np.complex128)
        rk.corrupt_full(model, np.where(np.isfinite(sky), sky, 0), tidx, a1, a2, m)
        bad = ~np.isfinite(sky).all(axis=(-1, -2))
        out_flag |= (bad[tidx, a1] | bad[tidx, a2])[:, :, None]
    swap = a1 > a2
    d, m, f, w = d.copy(), m.copy(), out_flag.copy(), weight.copy()
    perm = [0, 2, 1, 3]
    d[swap] = np.conj(d[swap][:, :, perm])
    m[swap] = np.conj(m[swap][:, :, perm])
    f[swap] = f[swap][:, :, perm]
    w[swap] = w[swap][:, :, perm]        # the weight goes with its sample (the former path kept it)
    w = np.where(f, 0.0, w)
    acc = rk.new_accumulators(n_sbin, n_fs, N_BL)
    rk.accumulate(acc, d, m, w, sbin, row_bl, fsamp)
    return acc, w.sum(axis=(1, 2))


@pytest.mark.parametrize("with_sky", [False, True])
@pytest.mark.parametrize("per_chan", [False, True])
def test_fused_accumulation_equals_preapply_then_accumulate(with_sky, per_chan):
    rng = np.random.default_rng(11 + with_sky + 2 * per_chan)
    n_row, n_t = 200, 5
    a1 = rng.integers(0, N_ANT, n_row)
    a2 = rng.integers(0, N_ANT, n_row)
    a2[a1 == a2] = (a1[a1 == a2] + 1) % N_ANT          # cross-correlations, both orientations
    assert (a1 > a2).any() and (a1 < a2).any()
    tidx = rng.integers(0, n_t, n_row)
    data = (rng.standard_normal((n_row, N_CHAN, 4)) + 1j * rng.standard_normal((n_row, N_CHAN, 4))
            ).astype(np.complex64)
    model = (rng.standard_normal((n_row, N_CHAN, 4)) + 1j * rng.standard_normal((n_row, N_CHAN, 4))
             ).astype(np.complex64)
    weight = rng.uniform(0.5, 2.0, (n_row, N_CHAN, 4)).astype(np.float32)   # differs per corr
    weight[rng.random(weight.shape) < 0.05] = 0
    flag = rng.random((n_row, N_CHAN, 4)) < 0.15
    data[flag & (rng.random(flag.shape) < 0.5)] = np.nan
    data[~flag & (rng.random(flag.shape) < 0.002)] = np.nan   # unflagged NaN: propagates (no RFI here)
    diag = (rng.uniform(0.5, 2, (n_t, N_ANT, N_CHAN, 2)) *
            np.exp(1j * rng.uniform(-np.pi, np.pi, (n_t, N_ANT, N_CHAN, 2))))
    diag[rng.random(diag.shape) < 0.03] = np.nan          # flagged solutions
    diag[rng.random(diag.shape) < 0.01] = 0
    sky = None
    if with_sky:
        sky = np.eye(2) + 0.1 * (rng.standard_normal((n_t, N_ANT, N_CHAN, 2, 2))
                                 + 1j * rng.standard_normal((n_t, N_ANT, N_CHAN, 2, 2)))
        sky[rng.random(sky.shape) < 0.01] = np.nan
    n_sbin = 3
    sbin = rng.integers(-1, n_sbin, n_row)
    row_bl, _, _ = rk.baseline_index(a1, a2, N_ANT)
    fsamp = np.arange(N_CHAN) if per_chan else np.arange(N_CHAN) // 5
    n_fs = int(fsamp.max()) + 1
    ref, ref_wrow = _two_step(data, model, flag, weight, tidx, a1, a2, sbin, row_bl, fsamp, diag, sky,
                              n_sbin, n_fs)
    shape = (n_sbin, N_BL, n_fs, 4)
    vs, ms, ws = np.zeros(shape, complex), np.zeros(shape, complex), np.zeros(shape)
    w_row = np.zeros(n_row)
    rows = np.arange(n_row)
    # two calls on two halves of the time table (the flow splits long chunks by time)
    for lo, hi in ((0, 2), (2, n_t)):
        sel = rows[(tidx >= lo) & (tidx < hi)]
        averaging.accumulate_corrected(vs, ms, ws, w_row, data, model, flag, weight, sel, tidx, a1, a2,
                                       sbin, row_bl, fsamp, diag=diag[lo:hi],
                                       sky=None if sky is None else sky[lo:hi], t_off=lo)
    got = (vs.transpose(0, 2, 1, 3), ms.transpose(0, 2, 1, 3), ws.transpose(0, 2, 1, 3))
    assert np.isnan(ref.vis_sum).any() and not np.isnan(ref.vis_sum).all()
    for g, r in zip(got, (ref.vis_sum, ref.model_sum, ref.w_sum)):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)
    used = sbin >= 0
    # flags and flagged Jones removed samples: less than 90% of the weights (as scaled by the pre-apply)
    wg = weight * np.abs(diag[tidx, a1][..., [0, 0, 1, 1]] * diag[tidx, a2][..., [0, 1, 0, 1]]) ** 2
    assert 0 < ws.sum() < 0.9 * np.nansum(wg[used])
    np.testing.assert_allclose(w_row[used], ref_wrow[used], rtol=1e-6)
    assert (w_row[~used] == 0).all()


def test_fused_accumulation_two_correlations_as_stored():
    """2-correlation data (XX, YY) read as stored with corr_map == the data expanded to 4 correlations
    (ms_io.to_four_corr: XY, YX zero and flagged)."""
    from alakazam.core import ms_io

    rng = np.random.default_rng(12)
    n_row, n_t = 80, 3
    a1, a2, tidx, data, model, weight, flag = _random_rows(rng, n_row, 2, (0, n_t), 0.1)
    diag = np.exp(1j * rng.uniform(-3, 3, (n_t, N_ANT, N_CHAN, 2)))
    sbin = np.zeros(n_row, np.int64)
    row_bl, _, _ = rk.baseline_index(a1, a2, N_ANT)
    fsamp = np.arange(N_CHAN) // 4
    corr = ["XX", "YY"]
    d4, f4, w4 = ms_io.to_four_corr(data, flag, weight, corr)
    m4, _, _ = ms_io.to_four_corr(model, flag, weight, corr)
    out = []
    for d, m, f, w, src in ((data, model, flag, weight, averaging.corr_map(corr)), (d4, m4, f4, w4, None)):
        shape = (1, N_BL, 3, 4)
        acc = (np.zeros(shape, complex), np.zeros(shape, complex), np.zeros(shape))
        averaging.accumulate_corrected(*acc, np.zeros(n_row), d, m, f, w, np.arange(n_row), tidx, a1, a2,
                                       sbin, row_bl, fsamp, corr_src=src, diag=diag)
        out.append(acc)
    assert list(averaging.corr_map(corr)) == [0, -1, -1, 1]
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)
    assert (out[0][2][..., [0, 3]] > 0).any() and (out[0][2][..., [1, 2]] == 0).all()


@pytest.mark.parametrize("use", [(True, False, False, True), (False, True, True, False)])
def test_fused_accumulation_sums_only_the_correlations_used(use):
    """corr_use (a solve passes its term's correlations: G, K the parallel hands; KC, CP the cross
    hands): the used correlations' sums equal the all-correlation pass exactly, the others stay 0, and
    w_row counts only the used correlations' weights (rows of both orientations, flags, flagged Jones)."""
    rng = np.random.default_rng(31)
    n_row, n_t = 120, 4
    a1, a2, tidx, data, model, weight, flag = _random_rows(rng, n_row, 4, (0, n_t), 0.1)
    assert (a1 > a2).any() and (a1 < a2).any()
    dshape = (n_t, N_ANT, N_CHAN, 2)
    diag = rng.uniform(0.5, 2, dshape) * np.exp(1j * rng.uniform(-3, 3, dshape))
    diag[rng.random(diag.shape) < 0.03] = np.nan
    sshape = (n_t, N_ANT, 1, 2, 2)
    sky = np.eye(2) + 0.1 * (rng.standard_normal(sshape) + 1j * rng.standard_normal(sshape))
    sbin = rng.integers(0, 2, n_row)
    row_bl, _, _ = rk.baseline_index(a1, a2, N_ANT)
    fsamp = np.arange(N_CHAN) // 3
    out = []
    for cu in (None, np.array(use)):
        shape = (2, N_BL, int(fsamp.max()) + 1, 4)
        acc = (np.zeros(shape, complex), np.zeros(shape, complex), np.zeros(shape), np.zeros(n_row))
        averaging.accumulate_corrected(*acc, data, model, flag, weight, np.arange(n_row), tidx, a1, a2, sbin,
                                       row_bl, fsamp, diag=diag, sky=sky, corr_use=cu)
        out.append(acc)
    u = np.array(use)
    for x, y in zip(out[0][:3], out[1][:3]):
        np.testing.assert_array_equal(y[..., u], x[..., u])
        assert (y[..., ~u] == 0).all() and (x[..., ~u] != 0).any()
    # w_row: the used correlations' weights of each row (in its own orientation: pq <-> qp swap both
    # cross hands, so the used set is the same in either orientation)
    ok = (~flag & np.isfinite(diag[tidx, a1][..., [0, 0, 1, 1]])
          & np.isfinite(diag[tidx, a2][..., [0, 1, 0, 1]]))
    wg = weight * np.abs(diag[tidx, a1][..., [0, 0, 1, 1]] * diag[tidx, a2][..., [0, 1, 0, 1]]) ** 2
    np.testing.assert_allclose(out[1][3], np.where(ok, wg, 0)[..., u].sum(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="corr_use"):
        averaging.accumulate_corrected(*out[0], data, model, flag, weight, np.arange(n_row), tidx, a1, a2,
                                       sbin, row_bl, fsamp, corr_use=np.ones(2, bool))


@pytest.mark.parametrize("full_band", [False, True])
def test_fused_accumulation_all_corr_takes_whole_samples_only(full_band):
    """all_corr (a D solve): a (row, channel) is summed only when its four correlations are all usable;
    one flagged correlation, a zero weight or a flagged pre-applied hand drops the sample from all four
    sums, and the result equals the default pass on data where such samples are flagged whole (over
    the full band: the whole-sample kernel against the hands kernel, both summing a row's channels
    before adding them)."""
    rng = np.random.default_rng(41)
    n_row, n_t = 90, 3
    a1, a2, tidx, data, model, weight, flag = _random_rows(rng, n_row, 4, (0, n_t), 0.05)
    shape = flag.shape
    weight[rng.random(shape) < 0.03] = 0
    diag = np.exp(1j * rng.uniform(-3, 3, (n_t, N_ANT, N_CHAN, 2)))
    diag[rng.random(diag.shape) < 0.03] = np.nan
    sbin = np.zeros(n_row, np.int64)
    row_bl, _, _ = rk.baseline_index(a1, a2, N_ANT)
    fsamp = np.zeros(N_CHAN, np.int64) if full_band else np.arange(N_CHAN) // 2
    # the samples the rule drops, flagged whole by hand
    bad_g = ~np.isfinite(diag[tidx, a1][..., [0, 0, 1, 1]]) | ~np.isfinite(diag[tidx, a2][..., [0, 1, 0, 1]])
    partial = (flag | (weight <= 0) | bad_g).any(axis=-1)
    assert partial.any() and not partial.all()
    flag_whole = flag | partial[..., None]
    out = []
    for f, all_corr in ((flag, True), (flag_whole, False)):
        acc = tuple(np.zeros((1, N_BL, int(fsamp.max()) + 1, 4), dt) for dt in (complex, complex, float))
        averaging.accumulate_corrected(*acc, np.zeros(n_row), data, model, f, weight, np.arange(n_row), tidx,
                                       a1, a2, sbin, row_bl, fsamp, diag=diag, all_corr=all_corr)
        out.append(acc)
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)
    assert (out[0][2] > 0).any()


@pytest.mark.parametrize("sub", [False, True])
@pytest.mark.parametrize("feed", ["linear", "circular", None])
def test_whole_sample_kernel_equals_general_kernel(feed, sub, monkeypatch):
    """all_corr over the full band (D) goes to averaging._accumulate_whole, which sums each row's channels
    before adding them: its sums equal the general kernel's (channel by channel into the sums) to
    rounding, with both orientations, a permuted correlation order, flags, zero weights, flagged
    pre-applied hands, P (real: linear feeds; complex: circular) or none, an offset into the tables and
    the bin-major layout; the same bits on 1 and 2 threads; a correlation missing from the MS sums
    nothing.  ``sub``: the band cut into three runs of channels (``sub_bands``, misfitcheck's sub-bands),
    each run summed by the whole-sample kernel likewise."""
    import numba

    from alakazam.jones.parang import parang_matrices

    rng = np.random.default_rng(47)
    n_row, n_t, n_bin = 200, 4, 3
    # t_off 1: tables from the second time
    a1, a2, tidx, data, model, weight, flag = _random_rows(rng, n_row, 4, (1, n_t), 0.05)
    shape = flag.shape
    weight[rng.random(shape) < 0.03] = 0
    tshape = (n_t - 1, N_ANT, N_CHAN, 2)
    diag = rng.uniform(0.5, 2, tshape) * np.exp(1j * rng.uniform(-3, 3, tshape))
    diag[rng.random(diag.shape) < 0.03] = np.nan
    sky = None
    if feed:
        sky = np.ascontiguousarray(parang_matrices(rng.uniform(-3, 3, (n_t - 1, N_ANT)), feed)[:, :, None])
        sky[0, 2] = np.nan                            # a flagged P: its rows add nothing
    corr_src = np.array([2, 0, 3, 1])                 # stored order differs from pp, pq, qp, qq
    sbin = rng.integers(0, n_bin, n_row)
    row_bl, _, _ = rk.baseline_index(a1, a2, N_ANT)
    flag[(row_bl == 0) & (sbin == 0)] = True         # an element without data
    fsamp = np.zeros(N_CHAN, np.int64)
    if sub:                                           # three runs of channels
        fsamp = np.minimum(np.arange(N_CHAN) // 3, 2).astype(np.int64)
    fsamp[2] = -1                                     # a channel not used
    n_fs = int(fsamp.max()) + 1
    kernels = []
    threaded = averaging.threaded
    monkeypatch.setattr(averaging, "threaded", lambda k, *a: (kernels.append(k), threaded(k, *a))[1])

    def run(whole, threads, src=corr_src):
        monkeypatch.setattr(averaging, "_WHOLE", whole)
        base = tuple(np.zeros((n_fs, N_BL, n_bin, 4), dt) for dt in (complex, complex, float))
        acc = tuple(a.transpose(2, 1, 0, 3) for a in base)          # bin-major: (n_bin, n_bl, 1, 4) view
        w_row = np.zeros(n_row)
        old = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            averaging.accumulate_corrected(*acc, w_row, data, model, flag, weight, np.arange(n_row), tidx,
                                           a1, a2, sbin, row_bl, fsamp, src, diag=diag, sky=sky, t_off=1,
                                           all_corr=True, sub_bands=sub)
        finally:
            numba.set_num_threads(old)
        return acc, w_row

    (gen, wr_gen), (new, wr_new) = run(False, 1), run(True, 1)
    acc_kernels = [k for k in kernels if k in (averaging._accumulate_corrected, averaging._accumulate_whole)]
    assert acc_kernels == [averaging._accumulate_corrected, averaging._accumulate_whole]
    assert (gen[2] > 0).sum() > 10 and (gen[2] == 0).any()
    np.testing.assert_array_equal(new[2] > 0, gen[2] > 0)
    for x, y in zip(new, gen):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=0)
    np.testing.assert_allclose(wr_new, wr_gen, rtol=1e-12, atol=0)
    if numba.config.NUMBA_NUM_THREADS >= 2:
        two, wr_two = run(True, 2)
        for x, y in zip(two, new):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(wr_two, wr_new)
    missing = np.array([2, 0, -1, 1])                 # qp not in the MS: no whole sample anywhere
    none, wr_none = run(True, 1, missing)
    assert not any(a.any() for a in none) and not wr_none.any()
