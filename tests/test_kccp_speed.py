"""The faster KC / CP / D solve paths (issue 16) equal their numpy definitions (kept here as the
references: the code they replaced)."""

import numpy as np
import pytest

from alakazam.solvers import CellBatch


def _cplx(rng, *shape):
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def _random_batch(rng, n_cell, n_ant, n_samp, flagged=0.2):
    """Random data, model and weights on every baseline of n_ant antennas; ~20% of samples flagged."""
    a1, a2 = np.triu_indices(n_ant, 1)
    shape = (n_cell, len(a1), n_samp, 4)
    w = rng.uniform(0.5, 2.0, shape) * (rng.uniform(size=shape) > flagged)
    return CellBatch(vis=_cplx(rng, *shape), model=_cplx(rng, *shape), weight=w, ant1=a1, ant2=a2,
                     freq=np.tile(np.linspace(1.0e9, 1.1e9, n_samp), (n_cell, 1)), n_ant=n_ant)


def _reference_leakage_offsets(batch, min_frac):
    """cross_phase.remove_leakage_offsets as numpy passes (the definition; the code before the kernel)."""
    v, m, w = batch.vis, batch.model, batch.weight
    tilde = {}
    num = np.zeros(batch.n_cell)
    den = np.zeros(batch.n_cell)
    for c in (1, 2):
        wc = w[..., c]
        ws = wc.sum(axis=2, keepdims=True)
        ws = np.where(ws > 0, ws, 1.0)
        vt = np.where(wc > 0, v[..., c] - (wc * v[..., c]).sum(axis=2, keepdims=True) / ws, 0)
        mt = np.where(wc > 0, m[..., c] - (wc * m[..., c]).sum(axis=2, keepdims=True) / ws, 0)
        tilde[c] = (vt, mt)
        num += (wc * np.abs(mt) ** 2).sum(axis=(1, 2))
        den += (wc * np.abs(m[..., c]) ** 2).sum(axis=(1, 2))
    changed = num >= min_frac * np.where(den > 0, den, np.inf)
    for c in (1, 2):
        vt, mt = tilde[c]
        v[changed, ..., c] = vt[changed]
        m[changed, ..., c] = mt[changed]
    return changed


def test_leakage_offsets_equal_numpy_definition():
    from alakazam.solvers import cross_phase

    rng = np.random.default_rng(11)
    batch = _random_batch(rng, 9, 5, 4)
    batch.model[2] = batch.model[2, :, :1]                 # a cell whose model does not vary: unchanged
    batch.weight[3, 2] = 0                                 # a baseline without data
    batch.weight[4] = 0                                    # a cell without data
    batch.model[5, :, :, 1:3] *= 1e-3                      # cross hands nearly constant: below the fraction
    batch.model[5, :, :, 1:3] += _cplx(rng, 10, 1, 2)
    ref = CellBatch(vis=batch.vis.copy(), model=batch.model.copy(), weight=batch.weight.copy(),
                    ant1=batch.ant1, ant2=batch.ant2, freq=batch.freq, n_ant=batch.n_ant)
    want = _reference_leakage_offsets(ref, cross_phase.MIN_VARYING_FRACTION)
    before = CellBatch(vis=batch.vis.copy(), model=batch.model.copy(), weight=batch.weight.copy(),
                       ant1=batch.ant1, ant2=batch.ant2, freq=batch.freq, n_ant=batch.n_ant)
    power = np.full((batch.n_cell, 2), np.nan)
    got = cross_phase.remove_leakage_offsets(batch, model_power=power)
    assert want.tolist() == got.tolist()
    # the same pass's model power: cross_model_power of the batch as it was, per cell
    for c in range(batch.n_cell):
        one = CellBatch(vis=before.vis[c:c + 1], model=before.model[c:c + 1], weight=before.weight[c:c + 1],
                        ant1=batch.ant1, ant2=batch.ant2, freq=batch.freq[c:c + 1], n_ant=batch.n_ant)
        np.testing.assert_allclose(power[c], cross_phase.cross_model_power(one), rtol=1e-12, atol=0)
    assert power[4].tolist() == [0.0, 0.0] and (power[:4, 0] > 0).all()
    assert want.any() and not want.all()                   # both branches exercised
    np.testing.assert_allclose(batch.vis, ref.vis, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(batch.model, ref.model, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(batch.weight, ref.weight)


@pytest.fixture(scope="module")
def small_ms(tmp_path_factory):
    from alakazam.sim import simulate_ms

    ms = str(tmp_path_factory.mktemp("kccp") / "sim.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8,), duration_h=1.0, int_s=120.0, scan_len_s=600.0,
                noise=0.05, seed=5, flag_rows=0.02, dead_ant=False, leakage_scale=0.003)
    return ms


def _kc_solve(ms, out, tint, combine=""):
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.io import hdf5

    d = dict(ms=ms, output=out, ref_ant="C00", apply_parang=True, jones=["KC"], field=["3C286"],
             time_interval=[tint], freq_interval=["full"])
    if combine:
        d["combine"] = [combine]
    run_solve(solve_config_from_dict(d))
    return hdf5.read_term(out, "KC0")


@pytest.mark.parametrize("tint,combine", [("inf", ""), ("scan", ""), ("3min", ""), ("20min", "scan")])
def test_kc_sums_in_batch_layout_equal_copied_batch(small_ms, tmp_path, monkeypatch, tint, combine):
    """KC over the whole band accumulates its sums in the batch layout (unit._sample_slots) and
    divides them in place: the same solutions as the transposed copy of per-scan sums (_make_batch)."""
    from alakazam import unit

    got = _kc_solve(small_ms, str(tmp_path / "new.h5"), tint, combine)
    monkeypatch.setattr(unit, "_sample_slots", lambda g, group: None)
    want = _kc_solve(small_ms, str(tmp_path / "old.h5"), tint, combine)
    assert len(got) == len(want) and len(got)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.flags, b.flags)
        np.testing.assert_allclose(a.delay, b.delay, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.jones, b.jones, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.time, b.time, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.extra["snr"] if "snr" in a.extra else 0,
                                   b.extra["snr"] if "snr" in b.extra else 0, rtol=1e-9)


def test_kc_slot_batch_with_an_empty_sample_bin_solves_as_the_copied_batch():
    """A sample bin without rows is a weight-0 slot in the batch layout (left out by the copy): the
    same KC solution."""
    from alakazam import solvers, unit

    rng = np.random.default_rng(2)
    n_ant, n_chan, n_sbin = 5, 16, 3
    a1, a2 = np.triu_indices(n_ant, 1)
    n_bl = len(a1)
    freqs = np.linspace(1.0e9, 1.2e9, n_chan)
    shape = (n_sbin, n_bl, n_chan, 4)
    tau, phi = 1.7, 0.4
    m = _cplx(rng, *shape)
    th = 2 * np.pi * 1e-9 * tau * (freqs - freqs.mean()) + phi
    v = m.copy()
    v[..., 1] *= np.exp(-1j * th)
    v[..., 2] *= np.exp(1j * th)
    v += 0.05 * _cplx(rng, *shape)
    w = rng.uniform(0.5, 2.0, shape)
    w[1] = 0                                             # sample bin 1: no rows
    v[1] = m[1] = 0
    sums = [v * w, m * w, w]
    # the copy: tsamples of the one time cell are the bins with rows
    old, _ = unit._make_batch(*[s.copy() for s in sums], [np.array([0, 2])], np.zeros(n_chan, np.int64), 1,
                              freqs, True, a1, a2, n_ant, 0)
    # the batch layout: (cell, baseline, slot * n_chan + channel, corr)
    lay = [np.ascontiguousarray(s.transpose(1, 0, 2, 3).reshape(1, n_bl, n_sbin * n_chan, 4)) for s in sums]
    new, _ = unit._slot_batch(*lay, np.array([0]), freqs, n_sbin, a1, a2, n_ant, 0)
    assert new.vis.shape == (1, n_bl, 3 * n_chan, 4) and old.vis.shape == (1, n_bl, 2 * n_chan, 4)
    ro, rn = solvers.solve("KC", old), solvers.solve("KC", new)
    assert abs(ro.params[0, 0] - tau) < 0.05
    np.testing.assert_allclose(rn.params, ro.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rn.cost, ro.cost, rtol=1e-10)
    np.testing.assert_allclose(rn.extra["snr"], ro.extra["snr"], rtol=1e-10)


def _reference_antennas_with_data(batch, corr):
    bl_has = (batch.weight[..., list(corr)] > 0).any(axis=(2, 3))
    count = np.zeros((batch.n_cell, batch.n_ant), np.int64)
    np.add.at(count, (slice(None), batch.ant1), bl_has)
    np.add.at(count, (slice(None), batch.ant2), bl_has)
    return count > 0


def _reference_drop_sparse(batch, corr, min_bl):
    n_cell, n_ant = batch.n_cell, batch.n_ant
    dropped = np.zeros((n_cell, n_ant), bool)
    bl_has = (batch.weight[..., list(corr)] > 0).any(axis=(2, 3))
    a1, a2 = np.asarray(batch.ant1), np.asarray(batch.ant2)
    need = None
    while True:
        ok = bl_has & ~dropped[:, a1] & ~dropped[:, a2]
        count = np.zeros((n_cell, n_ant), np.int64)
        np.add.at(count, (slice(None), a1), ok)
        np.add.at(count, (slice(None), a2), ok)
        if need is None:    # at most the cell's other antennas with data before any is removed
            need = np.array([[min(int(min_bl), int((c > 0).sum()) - 1)] for c in count])
        new = (count > 0) & (count < need) & ~dropped
        if not new.any():
            break
        dropped |= new
    if dropped.any():
        batch.weight[dropped[:, a1] | dropped[:, a2]] = 0.0
    return dropped


@pytest.mark.parametrize("jt", ["G", "D", "KC", "CP"])
def test_antenna_counts_equal_add_at_definition(jt):
    """antennas_with_data and minblperant through the incidence product: the np.add.at results."""
    from alakazam.jones import terms
    from alakazam.solvers import common, quality

    rng = np.random.default_rng(4)
    # sparse: antennas fall below minblperant (D reads all four correlations: sparser samples)
    batch = _random_batch(rng, 12, 7, 3, flagged=0.87 if jt == "D" else 0.7)
    batch.weight[0] = 0
    corr = terms.get(jt).corr
    np.testing.assert_array_equal(common.antennas_with_data(batch, jt),
                                  _reference_antennas_with_data(batch, corr))
    ref = CellBatch(vis=batch.vis, model=batch.model, weight=batch.weight.copy(), ant1=batch.ant1,
                    ant2=batch.ant2, freq=batch.freq, n_ant=batch.n_ant)
    want = _reference_drop_sparse(ref, corr, 4)
    got = quality.drop_sparse_antennas(batch, jt, 4)
    assert want.any() and not want.all()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(batch.weight, ref.weight)


def test_kc_chi2_equals_model_vis_definition():
    from alakazam.solvers import cross_delay

    rng = np.random.default_rng(8)
    batch = _random_batch(rng, 3, 6, 40)
    params = np.array([[1.3, 0.2], [-4.0, 2.9], [0.0, 0.0]])
    mv = cross_delay.model_vis(params, batch)
    r = batch.vis[..., [1, 2]] - mv[..., [1, 2]]
    want = (batch.weight[..., [1, 2]] * (r.real ** 2 + r.imag ** 2)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(cross_delay.chi2(params, batch), want, rtol=1e-13)


def test_spare_arrays_are_zeroed_and_never_kept_while_referenced():
    from types import SimpleNamespace

    from alakazam import unit

    ctx = SimpleNamespace(spare=[], tier=1)
    n = unit._SPARE_MIN_BYTES // 16
    a, b, c = np.full(n, 7 + 1j), np.full(n, 3 + 0j), np.full(n // 2, 1.0)
    view = b[:10]                                  # b is still referenced (by a view): not kept
    arrays = [a, b, c]
    del a, c
    unit._keep_spare(ctx, arrays)
    assert len(ctx.spare) == 1 and ctx.spare[0].dtype == np.complex128
    del arrays
    z = unit._zeros(ctx, (2, n // 2), np.complex128)     # the spare, reshaped and zeroed
    assert z.shape == (2, n // 2) and not z.any() and ctx.spare == []
    assert view[0] == 3
    ctx.tier = 2                                   # tiers 2/3 keep nothing
    arrays = [np.ones(n, np.complex128)]
    unit._keep_spare(ctx, arrays)
    assert ctx.spare == []


def test_kc_cp_d_block_with_spare_arrays_equals_fresh_arrays(small_ms, tmp_path, monkeypatch):
    """The KC, CP, D block solved with every step's arrays reused by the next (threshold 0) gives the
    solutions of fresh arrays."""
    from alakazam import unit
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.io import hdf5

    def solve(out):
        run_solve(solve_config_from_dict(dict(
            ms=small_ms, output=out, ref_ant="C00", apply_parang=True, jones=["G", "KC", "CP", "D"],
            field=["3C286"], time_interval=["inf", "inf", "inf", "inf"],
            freq_interval=["1MHz", "full", "1MHz", "full"])))
        return {k: hdf5.read_term(out, k) for k in ("G0", "KC0", "CP0", "D0")}

    reused = []
    zeros = unit._zeros

    def counting(ctx, shape, dtype, fill=True):
        n = len(ctx.spare)
        out = zeros(ctx, shape, dtype, fill)
        reused.append(len(ctx.spare) < n)
        return out

    monkeypatch.setattr(unit, "_SPARE_MIN_BYTES", 0)
    monkeypatch.setattr(unit, "_zeros", counting)
    got = solve(str(tmp_path / "spare.h5"))
    assert sum(reused) >= 3
    monkeypatch.setattr(unit, "_keep_spare", lambda ctx, arrays: None)
    want = solve(str(tmp_path / "fresh.h5"))
    for k in want:
        for a, b in zip(got[k], want[k]):
            np.testing.assert_array_equal(a.flags, b.flags)
            np.testing.assert_array_equal(a.jones, b.jones)


def test_cross_hand_sums_equal_numpy_definition():
    from alakazam.errors import AlakazamError
    from alakazam.solvers import cross_phase

    rng = np.random.default_rng(9)
    b = _random_batch(rng, 4, 5, 6)
    v, m, w = b.vis, b.model, b.weight
    want = (w[..., 1] * np.conj(v[..., 1]) * m[..., 1]
            + w[..., 2] * v[..., 2] * np.conj(m[..., 2])).sum(axis=1)
    np.testing.assert_allclose(cross_phase._a_sum(b), want, rtol=1e-13)
    cross_phase.check_polarised(b, "CP")                       # polarised: no error
    b.model[..., 1:3] = 0
    with pytest.raises(AlakazamError, match="polarised model"):
        cross_phase.check_polarised(b, "CP")


def test_kc_cell_without_cross_hand_data_is_flagged_not_an_error():
    """A KC cell whose cross hands are all flagged (e.g. every antenna below minblperant) was a
    ZeroDivisionError in solve_exact; it is flagged like any cell without data."""
    from alakazam import solvers

    rng = np.random.default_rng(12)
    batch = _random_batch(rng, 2, 5, 16, flagged=0.0)
    batch.model[..., 1:3] *= 3                             # polarised enough for check_polarised
    batch.weight[1, ..., 1:3] = 0                          # cell 1: no cross-hand data
    res = solvers.solve("KC", batch)
    assert not res.flags[0].any() and res.flags[1].all()
    assert np.isfinite(res.delay[0]).all() and np.isnan(res.delay[1]).all()


def test_context_sent_to_workers_carries_no_spare_arrays():
    import pickle

    from alakazam import unit

    ctx = unit._Context(cfg=None, meta=None, ref=0, spw_sel={}, scans=None, max_rows=1, tier=1)
    ctx.spare.append(np.zeros(1000))
    back = pickle.loads(pickle.dumps(ctx))
    assert back.spare == [] and len(ctx.spare) == 1 and back.tier == 1


def test_kc_slot_layout_in_tier3_equals_copied_batch(small_ms, tmp_path, monkeypatch):
    """Tier 3 (reads of a few rows: KC's slot-layout sums accumulated chunk by chunk, threads split by
    baseline through ``part_key``; no spare arrays) gives the KC, CP and D of the copied batch."""
    from alakazam import unit
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.io import hdf5

    def solve(out):
        summary = run_solve(solve_config_from_dict(dict(
            ms=small_ms, output=out, ref_ant="C00", apply_parang=True, jones=["G", "KC", "CP", "D"],
            field=["3C286"], time_interval=["inf", "inf", "inf", "inf"],
            freq_interval=["1MHz", "full", "1MHz", "full"], memory_limit_gb=2e-5)))
        assert summary["tier"] == 3
        return {k: hdf5.read_term(out, k) for k in ("KC0", "CP0", "D0")}

    got = solve(str(tmp_path / "slots.h5"))
    monkeypatch.setattr(unit, "_sample_slots", lambda g, group: None)
    want = solve(str(tmp_path / "copy.h5"))
    for k in want:
        for a, b in zip(got[k], want[k]):
            np.testing.assert_array_equal(a.flags, b.flags)
            np.testing.assert_allclose(a.jones, b.jones, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("interp", ["nearest", "linear"])
def test_preapply_tables_kept_between_steps_equal_per_block_evaluation(small_ms, tmp_path, monkeypatch,
                                                                      interp):
    """The pre-apply product of a chunk kept between the steps of a block (calibration/preapply_cache:
    KC's K+B+G, extended by KC for CP, by CP for D), evaluated in small blocks of times, gives the
    solutions of chain.preapply_tables evaluated again per block and step -- bit for bit; and it is
    used (the later steps evaluate only their new term)."""
    from alakazam import unit
    from alakazam.calibration import chain, preapply_cache
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.io import hdf5

    first = str(tmp_path / "kbg.h5")
    run_solve(solve_config_from_dict(dict(
        ms=small_ms, output=first, ref_ant="C00", apply_parang=True, jones=["K", "G", "G"],
        field=["3C286"], time_interval=["scan", "4min", "inf"], freq_interval=["full", "full", "1MHz"],
        phase_only=[False, True, False])))

    def solve(out):
        run_solve(solve_config_from_dict(dict(
            ms=small_ms, output=out, ref_ant="C00", apply_parang=True, jones=["KC", "CP", "D"],
            field=["3C286"], time_interval=["inf", "inf", "inf"], freq_interval=["full", "1MHz", "full"],
            external_preapply=dict(tables=[first] * 3, jones=["K0", "G1", "G0"],
                                   time_interp=["nearest", "nearest", interp]))))
        return {k: hdf5.read_term(out, k) for k in ("KC0", "CP0", "D0")}

    monkeypatch.setattr(unit, "_TABLE_BLOCK_BYTES", 1)        # one time per block: blocks differ per step
    calls = []
    compose = chain.compose

    def counted(terms, *a, **k):
        calls.append(len(terms))
        return compose(terms, *a, **k)

    monkeypatch.setattr(chain, "compose", counted)
    got = solve(str(tmp_path / "kept.h5"))
    assert calls and set(calls[len(calls) // 3:]) == {1}      # after KC's chain: one new term at a time
    monkeypatch.setattr(preapply_cache, "usable", lambda *a: False)
    want = solve(str(tmp_path / "per_block.h5"))
    for k in want:
        assert len(got[k]) == len(want[k])
        for a, b in zip(got[k], want[k]):
            np.testing.assert_array_equal(a.flags, b.flags)
            np.testing.assert_array_equal(a.jones, b.jones)
            if a.delay is not None:
                np.testing.assert_array_equal(a.delay, b.delay)


def test_preapply_cache_only_in_tier1_for_diagonal_chains():
    from types import SimpleNamespace

    from alakazam.calibration import preapply_cache

    diag = SimpleNamespace(diagonal=True)
    ctx = SimpleNamespace(tier=1)
    assert preapply_cache.usable(ctx, [diag], 10, 5, 8, 10 ** 6)
    assert not preapply_cache.usable(SimpleNamespace(tier=2), [diag], 10, 5, 8, 10 ** 6)
    assert not preapply_cache.usable(ctx, [diag, SimpleNamespace(diagonal=False)], 10, 5, 8, 10 ** 6)
    assert not preapply_cache.usable(ctx, [], 10, 5, 8, 10 ** 6)
    assert not preapply_cache.usable(ctx, [diag], 10 ** 4, 25, 1024, 10 ** 9)     # 8 GB > a quarter


def test_cross_hand_pass_equals_numpy_definition():
    """cross_phase.cross_sums / cross_residual / model_power (one compiled pass, cells cut into sample
    blocks) equal the numpy expressions they replaced: the einsums of A, KC's presence and residual per
    hand, check_polarised's powers."""
    from alakazam.solvers import cross_phase

    rng = np.random.default_rng(21)
    for n_cell, n_samp in ((3, 7), (1, 2 * cross_phase._SAMP_BLOCK + 5)):
        b = _random_batch(rng, n_cell, 5, n_samp)
        b.weight[0, :, 1, 1:3] = 0                         # a sample without cross-hand data
        v, m, w = b.vis, b.model, b.weight
        want = (np.einsum("cbs,cbs,cbs->cs", w[..., 1], np.conj(v[..., 1]), m[..., 1])
                + np.einsum("cbs,cbs,cbs->cs", w[..., 2], v[..., 2], np.conj(m[..., 2])))
        a, present = cross_phase.cross_sums(b)
        np.testing.assert_allclose(a, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())
        np.testing.assert_array_equal(present, (w[..., 1:3] > 0).any(axis=(1, 3)))
        assert not present[0, 1]
        th = rng.uniform(-3, 3, (n_cell, n_samp))
        want_r = np.zeros((n_cell, n_samp))
        for k, sign in ((1, -1j), (2, 1j)):
            r = v[..., k] - np.exp(sign * th)[:, None, :] * m[..., k]
            want_r += (w[..., k] * (r.real ** 2 + r.imag ** 2)).sum(axis=1)
        np.testing.assert_allclose(cross_phase.cross_residual(b, np.exp(-1j * th), np.exp(1j * th)), want_r,
                                   rtol=1e-13)
        # check_polarised's powers: the einsums it used before
        s = (np.einsum("nc,nc,nc->c", w.reshape(-1, 4), m.reshape(-1, 4).real, m.reshape(-1, 4).real)
             + np.einsum("nc,nc,nc->c", w.reshape(-1, 4), m.reshape(-1, 4).imag, m.reshape(-1, 4).imag))
        np.testing.assert_allclose(cross_phase.model_power(b), (s[0] + s[3], s[1] + s[2]), rtol=1e-13)


@pytest.mark.parametrize("jt", ["D", "KC"])
def test_no_cross_hand_data_is_the_cross_hand_error(jt):
    """A batch with parallel-hand data only: D says it needs the cross hands (the check reads the
    baselines-with-data pass when the term's correlations are the cross hands); KC/CP say first that
    the model's cross hands carry no signal."""
    from alakazam import solvers
    from alakazam.errors import AlakazamError

    rng = np.random.default_rng(13)
    batch = _random_batch(rng, 2, 5, 4, flagged=0.0)
    batch.weight[..., 1:3] = 0
    with pytest.raises(AlakazamError, match="needs the cross hands" if jt == "D" else "polarised model"):
        solvers.solve(jt, batch)
    batch.weight[1, 3, 2, 1] = 1.0                         # one cross-hand sample: solved
    solvers.solve(jt, batch)


def _reference_make_batch_one_sample(sums, tsamples, n_fcell):
    """unit._make_batch for one frequency sample per cell as it was (the definition): zeroed arrays,
    then averaging.divide_sums of each accumulator bin's transposed view into sample k of its time
    cell's cells (it * n_fcell + f); padding samples stay 0."""
    from alakazam.core.averaging import divide_sums

    v, m, w = sums
    n_t, n_bl = len(tsamples), v.shape[1]
    n_samp = max(len(ts) for ts in tsamples)
    out = [np.zeros((n_t * n_fcell, n_bl, n_samp, 4), a.dtype) for a in (v, m, w)]
    for it, ts in enumerate(tsamples):
        c = slice(it * n_fcell, (it + 1) * n_fcell)
        for k, s in enumerate(ts):
            divide_sums(out[0][c, :, k], out[1][c, :, k], out[2][c, :, k], v[s].transpose(1, 0, 2),
                        m[s].transpose(1, 0, 2), w[s].transpose(1, 0, 2))
    return out


@pytest.mark.parametrize("n_fcell,tsamples", [
    (37, [[0, 3, 4], [1], [2, 5]]),          # per-bin CP / bandpass: uneven samples per time cell (padding)
    (1, [[0], [1], [2], [3], [4], [5]]),     # G per integration: one sample, one bin
    (40, [[5, 0, 2, 1, 4, 3]]),              # one cell over every bin, samples out of order
])
def test_make_batch_one_frequency_sample_equals_definition(n_fcell, tsamples):
    """_make_batch's one-sample-per-cell path (averaging.gather_divide writing every sample and the
    padding into uninitialised memory) equals the numpy definition exactly, bits included."""
    from alakazam import unit

    rng = np.random.default_rng(7)
    n_ant, n_acc = 6, 6
    a1, a2 = np.triu_indices(n_ant, 1)
    shape = (n_acc, len(a1), n_fcell, 4)
    w = rng.uniform(0.5, 2.0, shape) * (rng.uniform(size=shape) > 0.3)
    sums = [_cplx(rng, *shape) * w, _cplx(rng, *shape) * w, w]
    freqs = np.linspace(1.0e9, 1.1e9, n_fcell)
    def garbage(shape, dtype):          # memory that is not zeroed
        return np.full(shape, np.nan, dtype)

    batch, cells = unit._make_batch(*[s.copy() for s in sums], [np.array(t) for t in tsamples],
                                    np.arange(n_fcell), n_fcell, freqs, False, a1, a2, n_ant, 0,
                                    empty=garbage)
    want = _reference_make_batch_one_sample(sums, tsamples, n_fcell)
    for got, ref in zip((batch.vis, batch.model, batch.weight), want):
        np.testing.assert_array_equal(got, ref)
    assert cells == [(it, jf) for it in range(len(tsamples)) for jf in range(n_fcell)]
    np.testing.assert_array_equal(batch.freq, np.tile(freqs, len(tsamples))[:, None]
                                  * np.ones((1, batch.vis.shape[2])))


def test_gather_divide_threaded_equals_serial(monkeypatch):
    """Large enough for the thread pool: the same values as one serial call."""
    from alakazam.core import averaging

    rng = np.random.default_rng(3)
    shape = (4, 45, 70, 4)
    w = rng.uniform(0.5, 2.0, shape) * (rng.uniform(size=shape) > 0.2)
    v, m = _cplx(rng, *shape) * w, _cplx(rng, *shape) * w
    samp = np.array([[2, 0, 3], [1, -1, -1]])
    outs = []
    for thr in (1 << 62, 1):
        monkeypatch.setattr(averaging, "_THREADED_MIN", thr)
        dst = [np.full((2 * 70, 45, 3, 4), np.nan, dt) for dt in (complex, complex, float)]
        averaging.gather_divide(*dst, v, m, w, samp)
        outs.append(dst)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    assert not np.isnan(outs[1][0]).any()


def _block_solve(ms, out, tints, fints):
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.io import hdf5

    run_solve(solve_config_from_dict(dict(
        ms=ms, output=out, ref_ant="C00", apply_parang=True, jones=["G", "KC", "CP", "D"], field=["3C286"],
        time_interval=["inf"] + tints, freq_interval=["1MHz"] + fints)))
    return {k: hdf5.read_term(out, k) for k in ("CP0", "D0")}


@pytest.mark.parametrize("tints,fints", [(["inf", "inf", "inf"], ["full", "1MHz", "1MHz"]),
                                         (["inf", "inf", "inf"], ["full", "full", "full"]),
                                         (["inf", "scan", "inf"], ["full", "1MHz", "full"])])
def test_cp_d_bin_major_sums_equal_copied_batch(small_ms, tmp_path, monkeypatch, tints, fints):
    """CP and D over one time cell accumulate their sums bin-major (unit._bin_major: the batch layout)
    and divide them in place: bit for bit the solutions of the transposed copy (_make_batch), also
    per scan (a group per scan)."""
    from alakazam import unit

    used = []
    bin_major = unit._bin_major
    monkeypatch.setattr(unit, "_bin_major",
                        lambda g, group: used.append((g.jt, bin_major(g, group))) or used[-1][1])
    got = _block_solve(small_ms, str(tmp_path / "new.h5"), tints, fints)
    assert {jt for jt, b in used if b} == {"CP", "D"}         # per scan: a group per scan, one cell each
    monkeypatch.setattr(unit, "_bin_major", lambda g, group: False)
    want = _block_solve(small_ms, str(tmp_path / "old.h5"), tints, fints)
    for k in want:
        assert len(got[k]) == len(want[k]) and len(got[k])
        for a, b in zip(got[k], want[k]):
            assert a.jones.shape == b.jones.shape
            np.testing.assert_array_equal(a.flags, b.flags)
            np.testing.assert_array_equal(a.jones, b.jones)
            np.testing.assert_array_equal(a.extra["snr"], b.extra["snr"])


@pytest.mark.parametrize("block_bytes", [1, 1 << 40])
def test_cp_slots_kept_across_calls_equal_copied_batch(small_ms, tmp_path, monkeypatch, block_bytes):
    """CP per channel over one time cell: each baseline's (scan, baseline) slot is summed in a contiguous
    copy kept across the accumulation calls (averaging.bin_runs, stored by flush_runs after the last
    call): with one call per integration (blocks of one time) and with one call for all, the solutions
    are bit for bit those of the transposed copy of per-scan sums (no bin-major layout, no slots)."""
    from alakazam import unit
    from alakazam.core import averaging

    monkeypatch.setattr(unit, "_TABLE_BLOCK_BYTES", block_bytes)
    held = []
    flush = averaging.flush_runs
    monkeypatch.setattr(averaging, "flush_runs",
                        lambda *a: held.append(int((a[3][3] >= 0).sum())) or flush(*a))
    got = _block_solve(small_ms, str(tmp_path / "new.h5"), ["inf", "inf", "inf"], ["full", "1MHz", "full"])
    assert held and max(held) > 0                       # CP's slots were still held after its last call
    monkeypatch.setattr(unit, "_bin_major", lambda g, group: False)
    want = _block_solve(small_ms, str(tmp_path / "old.h5"), ["inf", "inf", "inf"], ["full", "1MHz", "full"])
    for k in want:
        assert len(got[k]) == len(want[k]) and len(got[k])
        for a, b in zip(got[k], want[k]):
            np.testing.assert_array_equal(a.flags, b.flags)
            np.testing.assert_array_equal(a.jones, b.jones)
            np.testing.assert_array_equal(a.extra["snr"], b.extra["snr"])


def test_bin_batch_leaves_out_a_sample_bin_without_rows_as_the_copy():
    """A sample bin without rows: _bin_batch leaves it out (a copy of the others), exactly as
    _make_batch's gather of the bins with rows."""
    from alakazam import unit

    rng = np.random.default_rng(5)
    n_ant, n_f, n_s = 5, 9, 4
    a1, a2 = np.triu_indices(n_ant, 1)
    shape = (n_f, len(a1), n_s, 4)                        # bin-major: (freq bin, baseline, sample bin)
    w = rng.uniform(0.5, 2.0, shape) * (rng.uniform(size=shape) > 0.2)
    w[:, :, 2] = 0                                        # sample bin 2: no rows
    sums = [_cplx(rng, *shape) * w, _cplx(rng, *shape) * w, w]
    sums[0][:, :, 2] = sums[1][:, :, 2] = 0
    freqs = np.linspace(1.0e9, 1.1e9, n_f)
    present = np.array([0, 1, 3])
    new, cells_new = unit._bin_batch(*[s.copy() for s in sums], present, np.arange(n_f), n_f, freqs, a1, a2,
                                     n_ant, 0)
    acc = [np.ascontiguousarray(s.transpose(2, 1, 0, 3)) for s in sums]     # (sample bin, bl, bin, 4)
    old, cells_old = unit._make_batch(*acc, [present], np.arange(n_f), n_f, freqs, False, a1, a2, n_ant, 0)
    assert new.vis.shape == (n_f, len(a1), 3, 4) and cells_new == cells_old
    for x, y in ((new.vis, old.vis), (new.model, old.model), (new.weight, old.weight), (new.freq, old.freq)):
        np.testing.assert_array_equal(x, y)


def test_check_polarised_on_a_cross_hand_only_batch():
    """A KC / CP solve sums only the cross hands (unit._accumulate_group: corr_use), so its batch has no
    parallel-hand weight: check_polarised then takes the data's cross-hand power as the scale -- an
    unpolarised model (cross hands 0) is still refused, a polarised one accepted; powers() equals the
    numpy sums."""
    from alakazam.errors import AlakazamError
    from alakazam.solvers import cross_phase

    rng = np.random.default_rng(41)
    b = _random_batch(rng, 2, 5, 2 * cross_phase._SAMP_BLOCK + 3)
    b.weight[..., [0, 3]] = 0
    v, m, w = b.vis, b.model, b.weight
    par, cross, dcross = cross_phase.powers(b)
    assert par == 0
    np.testing.assert_allclose(cross, (w[..., 1:3] * np.abs(m[..., 1:3]) ** 2).sum(), rtol=1e-12)
    np.testing.assert_allclose(dcross, (w[..., 1:3] * np.abs(v[..., 1:3]) ** 2).sum(), rtol=1e-12)
    cross_phase.check_polarised(b, "KC")                        # polarised: no error
    # cross hands at rounding level (1e-9 of the data's amplitude): refused as the parallel-hand scale
    # refuses them (power ratio 1e-18 < 1e-12); without a scale any non-zero value would pass
    b.model[..., 1:3] *= 1e-9 / np.abs(b.model[..., 1:3]).max()
    with pytest.raises(AlakazamError, match="polarised model"):
        cross_phase.check_polarised(b, "KC")
    b.model[..., 1:3] = 0
    with pytest.raises(AlakazamError, match="polarised model"):
        cross_phase.check_polarised(b, "KC")


def test_cp_chi2_and_cross_power_pass_equal_their_definitions():
    """CP's chi2 (cross_residual, one pass) equals model_vis's cost; cross_model_power equals
    leakage.model_power_sums on the cross hands; the KC / CP SNR through cross_power_counts equals the
    general pass (J M J^H per sample, _power_sums) it replaces for unit-modulus diagonal Jones."""
    from alakazam.solvers import cross_delay, cross_phase, leakage, quality

    rng = np.random.default_rng(44)
    for n_cell, n_samp in ((3, 7), (2, 2 * cross_phase._SAMP_BLOCK + 5)):
        b = _random_batch(rng, n_cell, 5, n_samp)
        b.weight[0, :, 1, 1:3] = 0
        params = rng.uniform(-3, 3, (n_cell, 1))
        mv = cross_phase.model_vis(params, b)
        r = b.vis[..., [1, 2]] - mv[..., [1, 2]]
        want = (b.weight[..., [1, 2]] * (r.real ** 2 + r.imag ** 2)).sum(axis=(1, 2, 3))
        np.testing.assert_allclose(cross_phase.chi2(params, b), want, rtol=1e-12)
        np.testing.assert_allclose(cross_phase.cross_model_power(b),
                                   leakage.model_power_sums(b.model, b.weight, (1, 2)), rtol=1e-12)
        has = np.ones((n_cell, b.n_ant), bool)
        has[1, 2] = False
        for jt, mod, p in (("CP", cross_phase, params), ("KC", cross_delay, rng.uniform(-5, 5, (n_cell, 1)))):
            J, _ = mod.to_jones(p, b)
            cost = rng.uniform(1.0, 9.0, n_cell) * b.weight.sum(axis=(1, 2, 3))
            assert quality._unit_cross_global(quality.terms.get(jt), J)
            got = quality.snr(jt, b, J, cost, has)
            J2 = J.copy()
            J2[..., 0, 1] = 1e-300          # not diagonal: the general pass (the same values)
            assert not quality._unit_cross_global(quality.terms.get(jt), J2)
            ref = quality.snr(jt, b, J2, cost, has)
            np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
            np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)


@pytest.mark.parametrize("corr", [(0, 3), (1, 2), (0,), (3,), (0, 1, 2, 3)])
def test_baselines_with_data_equals_numpy_definition(corr):
    """baselines_with_data, reading growing blocks of samples for the baselines not decided yet, gives
    numpy's ``(w[..., corr] > 0).any(axis=(2, 3))`` over the whole array, with NaN, negative and zero
    weights, a baseline whose only positive weight is its last sample, whole cells and baselines
    without data, any layout and dtype, one sample and none."""
    from alakazam.solvers import quality

    rng = np.random.default_rng(45)
    w = rng.uniform(-1.0, 1.0, (4, 10, 6, 4)) * (rng.uniform(size=(4, 10, 6, 4)) > 0.8)
    w[rng.uniform(size=w.shape) > 0.95] = np.nan
    w[1] = 0
    w[2, 3] = -1.0
    w[2, 4] = 0
    w[2, 4, -1, corr[-1]] = 0.5                      # positive only in the last sample
    want = (w[..., list(corr)] > 0).any(axis=(2, 3))
    assert want.any() and not want.all() and want[2, 4] and not want[2, 3]
    got = quality.baselines_with_data(w, corr)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(quality.baselines_with_data(np.asfortranarray(w), corr), want)
    np.testing.assert_array_equal(quality.baselines_with_data(w.astype(np.float32), corr), want)
    for n in (1, 0):
        np.testing.assert_array_equal(quality.baselines_with_data(w[:, :, :n], corr),
                                      (w[:, :, :n, list(corr)] > 0).any(axis=(2, 3)))


@pytest.mark.parametrize("jt", ["CP", "KC"])
def test_kc_cp_snr_shares_the_power_pass_unless_minblperant_drops(jt, monkeypatch):
    """A KC / CP solve makes the model's cross-hand power pass once for the polarised check and the SNR,
    and again when minblperant removes an antenna in between: its SNR is then that of the same batch
    with the antenna's baselines removed beforehand (the stale sums would count the removed
    baselines' power)."""
    from alakazam.solvers import SolveOptions, cross_phase, solve

    calls = []
    real = cross_phase.power_pass
    monkeypatch.setattr(cross_phase, "power_pass", lambda b: calls.append(1) or real(b))
    rng = np.random.default_rng(46)
    base = _random_batch(rng, 2, 6, 40, flagged=0.0)
    phi = np.array([0.4, -1.1])
    base.vis[..., 1] = np.exp(-1j * phi)[:, None, None] * base.model[..., 1] + 0.3 * base.vis[..., 1]
    base.vis[..., 2] = np.exp(1j * phi)[:, None, None] * base.model[..., 2] + 0.3 * base.vis[..., 2]
    sparse = (base.ant1 == 5) | (base.ant2 == 5)
    keep = np.flatnonzero(sparse)[:2]                # antenna 5 keeps 2 baselines: minblperant 4 drops it
    cut = sparse.copy()
    cut[keep] = False

    def batch(w):
        return CellBatch(vis=base.vis.copy(), model=base.model.copy(), weight=w, ant1=base.ant1,
                         ant2=base.ant2, freq=base.freq, n_ant=base.n_ant)

    w = base.weight.copy()
    w[:, cut] = 0
    dropped = solve(jt, batch(w.copy()), "numba", SolveOptions(min_bl_per_ant=4))
    assert len(calls) == 2 and dropped.extra["minblperant"][:, 5].all()
    calls.clear()
    w[:, sparse] = 0                                 # antenna 5 removed beforehand: nothing to drop
    ref = solve(jt, batch(w), "numba", SolveOptions(min_bl_per_ant=4))
    assert len(calls) == 1 and not ref.extra["minblperant"].any()
    np.testing.assert_allclose(dropped.extra["snr"], ref.extra["snr"], rtol=1e-12)
    np.testing.assert_allclose(dropped.extra["rchi2"], ref.extra["rchi2"], rtol=1e-12)
    assert (ref.extra["snr"] > 0).all()
