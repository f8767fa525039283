"""core/cellflags: the in-place compiled passes give the flags of their definitions (module docstring)."""

import types

import numpy as np
import pytest

from alakazam.core import cellflags, rfi

CORR = ["XX", "XY", "YX", "YY"]


def _chunk(seed, n_ant=7, n_int=12, n_chan=48, scans=2, model=True):
    rng = np.random.default_rng(seed)
    a1, a2 = np.triu_indices(n_ant, 0)                 # with autocorrelations
    rows = np.array([(sc + 1, 1000.0 * sc + 10 * t, p, q) for sc in range(scans) for t in range(n_int)
                     for p, q in zip(a1, a2)])
    n = len(rows)
    bp = 1 + 0.2 * np.sin(np.arange(n_chan) / 7)
    data = (bp[None, :, None] * (1 + 0.1 * rng.normal(size=(n, n_chan, 4)))
            + 0.1j * rng.normal(size=(n, n_chan, 4))).astype(np.complex64)
    data[:, 5] += 20 * np.exp(2j * np.pi * rng.random((n, 4)))          # a persistent RFI channel
    data[rng.random(n) < 0.02] *= 8                                        # broadband bursts
    data[rng.random((n, n_chan, 4)) < 0.003] += 15                         # intermittent RFI
    data[3, 7, 0] = np.nan
    flag = rng.random((n, n_chan, 4)) < 0.05
    flag[rows[:, 2] == 2] = True                                           # a dead antenna, flagged
    mod = (np.ones((n, n_chan, 4)) * bp[None, :, None]).astype(np.complex64) if model else None
    if model:
        mod[10, 3] = 0
    w = np.broadcast_to(rng.uniform(0.5, 1, (n, 1, 4)), data.shape)
    return types.SimpleNamespace(data=data, model=mod, flag=flag, weight=w, scan=rows[:, 0].astype(int),
                                 time=rows[:, 1], ant1=rows[:, 2].astype(int), ant2=rows[:, 3].astype(int),
                                 n_row=n)


def _extend_reference(flag, groups, cross, use_corr, prior=None):
    """The extension of the docstring with numpy reductions per group."""
    flag = flag.copy()
    rows = np.flatnonzero(cross)
    order = rows[np.argsort(np.asarray(groups)[rows], kind="stable")]
    g = np.asarray(groups)[order]
    starts = np.concatenate([[0], np.flatnonzero(g[1:] != g[:-1]) + 1])
    counts = np.diff(np.concatenate([starts, [len(order)]]))
    fl = flag[order][:, :, use_corr]
    if prior is None:
        avail = np.ones(fl.shape[:2], bool)
        f = fl.any(axis=2)
    else:
        pr = prior[order][:, :, use_corr]
        avail = (~pr).any(axis=2)
        f = (fl & ~pr).any(axis=2)
    n_av = np.add.reduceat(avail, starts, axis=0)
    bad = (np.add.reduceat(f, starts, axis=0) > cellflags.GROW * n_av) & (n_av > 0)
    hit = bad[np.repeat(np.arange(len(starts)), counts)]
    r, c = np.nonzero(hit)
    flag[order[r], c, :] = True
    f |= hit & avail
    n_row_av = avail.sum(axis=1)
    flag[order[(n_row_av > 0) & (f.sum(axis=1) > cellflags.GROW * n_row_av)]] = True
    return flag


@pytest.mark.parametrize("seed, kw, keep_x", [
    (1, {}, True), (2, {"model": False}, True), (3, {"n_int": 3}, True),
    (4, {"n_chan": 130, "n_int": 9, "scans": 3}, True),
    (1, {}, False),                                         # the MAD computes the ratios again
    (5, {"n_ant": 3, "n_int": 1, "scans": 3}, True)])       # groups of 3 rows (< MIN_ROWS)
def test_flag_chunk_equals_the_composition_of_its_stages(seed, kw, keep_x, monkeypatch):
    """flag_chunk runs the per-row MAD and the final extension group by group, right after each group's
    channel statistics (from the ratios they computed, when kept): the flags of the stages run one
    after the other over the whole chunk."""
    if not keep_x:
        monkeypatch.setattr(cellflags, "KEEP_X_BYTES", 0)
    ch = _chunk(seed, **kw)
    before = ch.flag.copy()
    got = cellflags.flag_chunk(ch, CORR, 5.0)
    assert np.array_equal(ch.flag, before)              # the chunk's flags are not modified
    use = cellflags.parallel_hands(CORR)
    groups = cellflags.stat_blocks(ch.scan, ch.time)
    f0, _ = cellflags.flag_bad_values(ch.data, ch.model, ch.weight, ch.flag)
    f1, n1 = cellflags.flag_persistent(ch.data, ch.model, f0, groups, ch.ant1, ch.ant2, use, 5.0)
    f2 = rfi.mad_flag(ch.data, ch.model, f1, 5.0, upper=True)      # one-sided in the solve
    want = _extend_reference(f2, groups, ch.ant1 != ch.ant2, use, f0)
    assert np.array_equal(got, want)
    if kw.get("n_ant", 7) > 3:
        assert n1 > 0 and got[:, 5][ch.ant1 != ch.ant2].all()     # the persistent channel, whole
    assert got.mean() < 0.5


@pytest.mark.parametrize("with_prior", [False, True])
def test_extend_equals_reference(with_prior):
    ch = _chunk(5)
    rng = np.random.default_rng(9)
    flag = ch.flag | (rng.random(ch.flag.shape) < 0.3)
    flag[:, 11] |= rng.random((ch.n_row, 4)) < 0.8       # a channel mostly flagged: extends
    groups = cellflags.stat_blocks(ch.scan, ch.time)
    cross = ch.ant1 != ch.ant2
    prior = ch.flag if with_prior else None
    want = _extend_reference(flag, groups, cross, np.array([0, 3]), prior)
    got = cellflags.extend(flag.copy(), groups, cross, np.array([0, 3]), prior)
    assert np.array_equal(got, want)
    assert (want & ~flag).any()                          # the case extends something


def test_mad_flag_in_place_equals_copy():
    ch = _chunk(6)
    want = rfi.mad_flag(ch.data, ch.model, ch.flag, 4.0)
    f = ch.flag.copy()
    assert rfi.mad_flag(ch.data, ch.model, f, 4.0, out=f) is f
    assert np.array_equal(f, want) and (want & ~ch.flag).any()


def test_extension_of_a_small_group_is_serial_and_equal(monkeypatch):
    """The threaded extension of a group (two row passes on the pool) equals the serial one; a group of
    fewer than THREADED_MIN_SAMPLES (row, channel) pairs never goes to the pool (its hand-over costs
    more than the work: 2000 groups of 10 rows x 64 channels were 30% slower threaded)."""
    rng = np.random.default_rng(3)
    for n_row, n_chan in ((10, 64), (700, 64)):
        prior = rng.random((n_row, n_chan, 4)) < 0.05
        flag = prior | (rng.random((n_row, n_chan, 4)) < 0.3)
        flag[:, 5] |= rng.random((n_row, 4)) < 0.8                   # a channel to extend
        rows = np.arange(n_row, dtype=np.int64)
        use = np.array([0, 3], np.int64)
        want, bad_w = flag.copy(), np.zeros(n_chan, np.bool_)
        cellflags._extend_rows(want, prior, np.bool_(True), rows, bad_w, use)
        got, bad_g = flag.copy(), np.zeros(n_chan, np.bool_)
        calls = []
        real = cellflags.threaded
        monkeypatch.setattr(cellflags, "threaded", lambda *a: calls.append(1) or real(*a))
        cellflags._extend_rows_threaded(got, prior, rows, bad_g, use)
        monkeypatch.setattr(cellflags, "threaded", real)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(bad_g, bad_w)
        assert bool(calls) == (n_row * n_chan >= cellflags.THREADED_MIN_SAMPLES), (n_row, calls)


def test_stat_blocks_equal_the_unique_pairs_definition():
    """stat_blocks' lexsort equals its definition through np.unique of the (scan, time) pairs (rows in
    any order, repeated times, scans of a few integrations, one integration, unsorted scan numbers)."""
    rng = np.random.default_rng(4)
    scans = np.repeat([3, 1, 7, 2], [40, 5, 1, 23])
    times = np.concatenate([rng.choice(np.arange(40) * 10.0, 40), np.arange(5) * 10.0 + 1e3, [5e3],
                            rng.choice(np.arange(9) * 8.0 + 2e3, 23)])
    rows = rng.permutation(len(scans))
    scan, time = np.repeat(scans[rows], 3), np.repeat(times[rows], 3)
    pairs, inv = np.unique(np.column_stack([scan.astype(float), time]), axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    ps = pairs[:, 0].astype(np.int64)
    first = np.searchsorted(ps, ps, side="left")
    n_int = np.searchsorted(ps, ps, side="right") - first
    n_blk = np.maximum(1, np.floor(n_int / cellflags.BLOCK_INTEGRATIONS + 0.5).astype(np.int64))
    want = (ps * 2 ** 20 + np.minimum((np.arange(len(ps)) - first) // cellflags.BLOCK_INTEGRATIONS,
                                      n_blk - 1))[inv]
    np.testing.assert_array_equal(cellflags.stat_blocks(scan, time), want)
    assert len(np.unique(want)) > 5


def test_flag_chunk_of_autocorrelations_only_gets_the_per_row_mad():
    ch = _chunk(7)
    auto = np.flatnonzero(ch.ant1 == ch.ant2)
    for k in ("data", "model", "flag", "scan", "time", "ant1", "ant2"):
        setattr(ch, k, getattr(ch, k)[auto])
    ch.weight = ch.weight[auto]
    ch.n_row = len(auto)
    got = cellflags.flag_chunk(ch, CORR, 5.0)
    f0, _ = cellflags.flag_bad_values(ch.data, ch.model, ch.weight, ch.flag)
    want = rfi.mad_flag(ch.data, ch.model, f0, 5.0, upper=True)
    assert np.array_equal(got, want) and (want & ~f0).any()


@pytest.mark.parametrize("n_chan", [4, 8, 16])
def test_few_channels_clean_data_not_flagged_by_the_row_mad(n_chan):
    """A median and MAD over few channels flag clean Gaussian samples far beyond the threshold's rate
    (5 sigma: ~2% at 4 channels, 0.7% at 8, 0.15% at 16); the solve-time flags run the per-row MAD only on
    rows with rfi.MIN_SOLVE_MAD_CHANNELS usable channels, so narrow SPWs of clean data keep their
    samples, while akflag's explicit mode='mad' (rfi.mad_flag) still tests every row of >= MIN_CHANNELS.
    Strong intermittent RFI in those SPWs is still found by the channel statistics across rows."""
    rng = np.random.default_rng(n_chan)
    n_ant, n_int = 16, 64
    a1, a2 = np.triu_indices(n_ant, 1)
    rows = np.array([(1, 10.0 * t, p, q) for t in range(n_int) for p, q in zip(a1, a2)])
    n = len(rows)
    noise = 0.05 * (rng.normal(size=(n, n_chan, 4)) + 1j * rng.normal(size=(n, n_chan, 4)))
    data = (1 + noise).astype(np.complex64)
    mod = np.ones((n, n_chan, 4), np.complex64)
    chunk = types.SimpleNamespace(data=data, model=mod, flag=np.zeros(data.shape, bool),
                                  weight=np.ones(data.shape, np.float32), scan=rows[:, 0].astype(int),
                                  time=rows[:, 1], ant1=rows[:, 2].astype(int), ant2=rows[:, 3].astype(int),
                                  n_row=n)
    par = np.array([True, False, False, True])
    solve_rate = cellflags.flag_chunk(chunk, [9, 10, 11, 12], 5.0)[..., par].mean()
    row_mad_rate = rfi.mad_flag(data, mod, chunk.flag, 5.0)[..., par].mean()
    assert n_chan < rfi.MIN_SOLVE_MAD_CHANNELS
    assert row_mad_rate > 1e-3, row_mad_rate            # what the few-channel row MAD does
    # (measured 5.9e-4 / 1.8e-4 / 1.3e-4 from the other statistics; before: 2.3e-2 / 7.4e-3 / 1.6e-3)
    assert solve_rate < 1e-3 and solve_rate < row_mad_rate / 10, (solve_rate, row_mad_rate)
    # intermittent RFI (random samples, 10x the noise-free amplitude) is still flagged
    hit = rng.random(data.shape) < 0.003
    hit[..., ~par] = False
    chunk.data = data + (10 * hit).astype(np.complex64)
    got = cellflags.flag_chunk(chunk, [9, 10, 11, 12], 5.0)
    assert got[hit].mean() > 0.95, got[hit].mean()


def test_akflag_mad_warns_on_narrow_spws(tmp_path, caplog):
    """akflag mode='mad' still runs on an SPW of fewer than MIN_SOLVE_MAD_CHANNELS channels (the user
    asked for it) but warns, naming the SPW and its channel count, and not for a wide SPW."""
    import logging

    from alakazam.flagging import run_flag
    from alakazam.flagging.config import flag_config_from_dict
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "n.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(40, 8), duration_h=0.1, int_s=60.0, scan_len_s=600.0,
                noise=0.01, seed=1, leakage=False, crosshand=False, dead_ant=False)
    with caplog.at_level(logging.WARNING, logger="alakazam.flag"):
        run_flag(flag_config_from_dict(dict(ms=ms, mode="mad", threshold=5.0, quiet=True)))
    msgs = [r.getMessage() for r in caplog.records if "mode='mad'" in r.getMessage()]
    assert len(msgs) == 1 and "SPW 1 has only 8 selected channel(s)" in msgs[0], msgs
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam.flag"):
        run_flag(flag_config_from_dict(dict(ms=ms, mode="mad", threshold=5.0, quiet=True, spw="0")))
    assert not [r for r in caplog.records if "mode='mad'" in r.getMessage()]


@pytest.mark.parametrize("n_chan", [0, 3])
def test_flag_chunk_refuses_a_non_finite_threshold_whatever_the_channels(n_chan):
    """flag_chunk raises on rfi_threshold NaN / inf as before e2a3d18, also for a chunk of no channels
    (e2a3d18 returned the bad-value flags there without the error)."""
    from alakazam.errors import AlakazamError

    ch = _chunk(1, n_ant=3, n_int=2, n_chan=8, scans=1)
    ch.data, ch.model, ch.flag = ch.data[:, :n_chan], ch.model[:, :n_chan], ch.flag[:, :n_chan]
    ch.weight = ch.weight[:, :n_chan]
    for thr in (float("nan"), float("inf")):
        with pytest.raises(AlakazamError, match="rfi_threshold"):
            cellflags.flag_chunk(ch, CORR, thr)
    assert cellflags.flag_chunk(ch, CORR, 0.0).shape == ch.data.shape
