"""Session-25 review of the calibration / apply side: defects left open by earlier reviews, each pinned by
the test written before its fix."""

import os
import shutil

import numpy as np
import pytest

from alakazam.errors import AlakazamError, ParameterError
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """5 antennas, one SPW of 4 channels, 1 h of 120 s integrations in 10-min scans: 3C286 (scans 1, 4),
    3C147 (2, 5), TARGET (3, 6); linear feeds, no leakage."""
    d = tmp_path_factory.mktemp("review25")
    ms = str(d / "s.ms")
    truth = simulate_ms(ms, feed="linear", n_ant=5, n_ant_extra=0, n_chan=(4,), int_s=120.0, scan_len_s=600.0,
                        duration_h=1.0, noise=0.05, seed=24, leakage=False, dead_ant=False)
    return ms, truth


def _copy(ms, tmp_path, name="c.ms"):
    out = str(tmp_path / name)
    shutil.copytree(ms, out)
    return out


@pytest.fixture(scope="module")
def two_cal(small, tmp_path_factory):
    """K (solint inf) and G (per scan) solved on 3C286 and 3C147: for TARGET's first scan, K's nearest
    solution field and G's differ (tests/test_review_s24_solve.py)."""
    from alakazam.caltasks import akcal

    cal = str(tmp_path_factory.mktemp("review25_cal") / "kg.h5")
    akcal(vis=small[0], caltable=cal, field="3C286,3C147", jones=["K", "G"], solint=["inf", "scan"],
          refant="C00")
    return cal


def _without_kept_product(monkeypatch):
    from alakazam.calibration import preapply_cache

    monkeypatch.setattr(preapply_cache, "usable", lambda *a: False)


# ------------------------------------------------------------------ 1. solve pre-apply: one field per time
def test_kept_preapply_product_follows_one_field_per_time(small, tmp_path, monkeypatch):
    """K on 3C286+3C147, G on TARGET (kept product K0 on TARGET's rows), G on 3C286+3C147, G on TARGET:
    the last step extended the kept K0 product by G1 and G2 one term at a time, each choosing its field by
    itself -- not the one field per time of chain.compose (calibration/chainfield.py) that the per-block
    path and the apply use: G2 differed by up to 1.7 in TARGET's first scan.  Now the same solutions."""
    from alakazam.caltasks import akcal
    from alakazam.io import hdf5

    def solve(out):
        akcal(vis=small[0], caltable=out, field=["3C286,3C147", "TARGET", "3C286,3C147", "TARGET"],
              jones=["K", "G", "G", "G"], solint=["inf", "scan", "scan", "scan"], refant="C00")
        return hdf5.read_term(out, "G2")

    got = solve(str(tmp_path / "kept.h5"))
    _without_kept_product(monkeypatch)
    want = solve(str(tmp_path / "per_block.h5"))
    assert len(got) == len(want) == 2
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.flags, b.flags)
        np.testing.assert_array_equal(a.jones, b.jones)


@pytest.mark.parametrize("kept", [True, False])
def test_second_gain_on_the_target_finds_nothing_left(small, two_cal, tmp_path, monkeypatch, kept):
    """K0, G0 of two calibrators pre-applied to two G steps on TARGET: the second G pre-applies the first,
    solved on the same rows, so nothing is left for it (phases 0 to solver precision).  The per-block
    path (chain.compose) let the first G, solved on TARGET itself, decide nothing but also let K0 and G0
    choose their fields each by itself (the one-field rule was skipped when the chain's last term used
    the target's own solutions): G1 had 2.2 rad in TARGET's first scan.  The kept-product path (which
    extended the one-field K0*G0) was right, for the other reason."""
    from alakazam.caltasks import akcal
    from alakazam.io import hdf5

    if not kept:
        _without_kept_product(monkeypatch)
    out = str(tmp_path / "t.h5")
    akcal(vis=small[0], caltable=out, field="TARGET", jones=["G", "G"], solint=["scan", "scan"], refant="C00",
          gaintable=[two_cal], gainjones=["K0", "G0"])
    for s in hdf5.read_term(out, "G1"):
        ok = ~s.flags
        ph = np.angle(np.stack([s.jones[..., 0, 0], s.jones[..., 1, 1]], -1))[ok]
        assert ok.any() and np.abs(ph).max() < 0.02, np.abs(ph).max()


def test_apply_with_a_trailing_own_term_uses_one_calibrator_per_time(small, two_cal, tmp_path):
    """akapply to TARGET of K0, G0 (3C286 and 3C147) and a G solved on TARGET itself: the last term was
    the target's own, so chainfield gave up and K0 and G0 chose their fields each by itself.  Now the
    last term choosing among other fields (G0) decides for K0, as without the own term: TARGET's scan
    where they chose differently is corrected as well as its scan where they agree."""
    from casacore.tables import table

    from alakazam.caltasks import akapply, akcal

    ms, tgt = _copy(small[0], tmp_path), str(tmp_path / "t.h5")
    akcal(vis=ms, caltable=tgt, field="TARGET", jones=["G"], solint=["scan"], refant="C00",
          gaintable=[two_cal], gainjones=["K0", "G0"])
    akapply(vis=ms, gaintable=[two_cal, two_cal, tgt], jones=["K0", "G0", "G0"], field="TARGET")
    with table(ms, ack=False) as t:
        q = t.query("FIELD_ID==2 AND ANTENNA1!=ANTENNA2")
        with np.errstate(divide="ignore", invalid="ignore"):
            ph = np.angle(q.getcol("CORRECTED_DATA") / q.getcol("MODEL_DATA"))[..., [0, 3]]
        ok = ~q.getcol("FLAG")[..., [0, 3]]
        scan = q.getcol("SCAN_NUMBER")
    rms = [np.sqrt(np.mean(ph[scan == s][ok[scan == s]] ** 2)) for s in (3, 6)]
    # scan 3: K0's and G0's nearest fields differ (before: 1.76 rad); scan 6: they agree (0.22 rad: noise,
    # the unsolved bandpass and the gain drift within a scan)
    assert rms[0] < 1.25 * rms[1] and max(rms) < 0.3, rms


def test_a_trailing_one_field_term_does_not_pin_the_gains(small, two_cal, tmp_path):
    """Review 53b: a chain's last term solved on one calibrator only (CP on 3C286 after gains on two
    calibrators, CASA's order) was made the chain's lead, so K0 and G0 were pinned to that calibrator
    for every target time -- a target scan next to the other calibrator got gains 20 min away (Stokes
    I 0.85 of the truth there), silently.  Such a term (KC, CP, D) keeps its field and decides nothing:
    here a CP solved on 3C286 alone with K0, G0 pre-applied leaves TARGET's parallel hands as K0, G0
    alone correct them, in every scan (before: off by the gains' drift where 3C147 is the nearer)."""
    from casacore.tables import table

    from alakazam.caltasks import akapply, akcal

    one = str(tmp_path / "one.h5")
    akcal(vis=small[0], caltable=one, field="3C286", jones=["CP"], solint=["inf"], refant="C00",
          gaintable=[two_cal], gainjones=["K0", "G0"], parang=True)   # (CP on 3C286 needs it: review 58f)
    got = []
    for jones, tables in ((["K0", "G0"], [two_cal] * 2), (["K0", "G0", "CP0"], [two_cal, two_cal, one])):
        ms = _copy(small[0], tmp_path, f"c{len(jones)}.ms")
        akapply(vis=ms, gaintable=tables, jones=jones, field="TARGET")
        with table(ms, ack=False) as t:
            q = t.query("FIELD_ID==2 AND ANTENNA1!=ANTENNA2")
            got.append((q.getcol("CORRECTED_DATA")[..., [0, 3]], q.getcol("SCAN_NUMBER")))
    (a, scan), (b, _) = got
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.abs(np.angle(b / a))
    for sc in (3, 6):
        assert np.nanmax(d[scan == sc]) < 0.1, (sc, np.nanmax(d[scan == sc]))


def test_a_trailing_one_field_gain_still_pins_the_chain(small, two_cal, tmp_path, caplog):
    """Review 53d: the fix above first let no one-field term lead; a per-scan G solved on 3C286 alone with
    K0, G0 of 3C286 pre-applied then ran over 3C147's G0 (unscaled: 3C147's model is not its flux) in
    the target scans nearer 3C147 -- 0.25 of the target's flux.  A gain of one field still leads (only
    KC, CP and D do not): the chain equals K0, G0 pinned to 3C286, to the small G's own residual."""
    from casacore.tables import table

    from alakazam.caltasks import akapply, akcal

    gs = str(tmp_path / "gs.h5")
    akcal(vis=small[0], caltable=gs, field="3C286", jones=["G"], solint=["scan"], refant="C00",
          gaintable=[two_cal], gainjones=["K0", "G0"])
    got = []
    for jones, tables, sel in ((["K0", "G0"], [two_cal] * 2, dict(gainfield=["pinned"] * 2,
                                                                    solutionfield=["3C286", "3C286"])),
                               (["K0", "G0", "G0"], [two_cal, two_cal, gs], {})):
        ms = _copy(small[0], tmp_path, f"p{len(jones)}.ms")
        with caplog.at_level("INFO"):
            akapply(vis=ms, gaintable=tables, jones=jones, field="TARGET", **sel)
        with table(ms, ack=False) as t:
            q = t.query("FIELD_ID==2 AND ANTENNA1!=ANTENNA2")
            got.append((q.getcol("CORRECTED_DATA")[..., [0, 3]], q.getcol("SCAN_NUMBER")))
    (a, scan), (b, _) = got
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(b / a)
    for sc in (3, 6):
        assert abs(np.nanmedian(r[scan == sc]) - 1) < 0.05, (sc, np.nanmedian(r[scan == sc]))
    # the log says the chain pinned them (each term's own line names its own choice; review 53e)
    assert "follow the calibrator G0 (gs.h5) takes at each time" in caplog.text


def test_a_trailing_one_field_bandpass_does_not_pin_gains_per_scan(small, two_cal, tmp_path):
    """Review 53e: with the lead chosen by type, a bandpass over 'inf' solved on 3C286 alone and listed
    after the per-scan G0 of two calibrators pinned G0 to 3C286 (the target's phase error 12.1 -> 16.3
    deg by the list's order alone).  The most time-variable term leads: both orders correct the same."""
    from casacore.tables import table

    from alakazam.caltasks import akapply, akcal

    bp = str(tmp_path / "bp.h5")
    akcal(vis=small[0], caltable=bp, field="3C286", jones=["G"], solint=["inf"], freqint=["1ch"],
          refant="C00", gaintable=[two_cal], gainjones=["K0", "G0"])
    got = []
    for k, (jones, tables) in enumerate(((["K0", "G0", "G0"], [two_cal, bp, two_cal]),
                                         (["K0", "G0", "G0"], [two_cal, two_cal, bp]))):
        ms = _copy(small[0], tmp_path, f"o{k}.ms")
        akapply(vis=ms, gaintable=tables, jones=jones, field="TARGET")
        with table(ms, ack=False) as t:
            got.append(t.query("FIELD_ID==2").getcol("CORRECTED_DATA"))
    np.testing.assert_allclose(got[0], got[1], rtol=1e-5, atol=1e-6)


def test_a_tie_in_solution_times_is_broken_by_fields_not_order(small, tmp_path):
    """Review 53f: K per scan on 3C286 and G per scan on 3C286 + 3C147 have as many solution times; the
    last listed led, so [G0, K0] pinned G0 to 3C286 (15.8 against 12.1 deg).  Of equals, the term with
    solutions on more fields leads: both orders correct the same."""
    from casacore.tables import table

    from alakazam.caltasks import akapply, akcal

    k, g = str(tmp_path / "k.h5"), str(tmp_path / "g.h5")
    akcal(vis=small[0], caltable=k, field="3C286", jones=["K"], solint=["scan"], refant="C00")
    akcal(vis=small[0], caltable=g, field="3C286,3C147", jones=["G"], solint=["scan"], refant="C00",
          gaintable=[k], gainjones=["K0"])
    got = []
    for i, (jones, tables) in enumerate(((["K0", "G0"], [k, g]), (["G0", "K0"], [g, k]))):
        ms = _copy(small[0], tmp_path, f"t{i}.ms")
        akapply(vis=ms, gaintable=tables, jones=jones, field="TARGET")
        with table(ms, ack=False) as t:
            got.append(t.query("FIELD_ID==2").getcol("CORRECTED_DATA"))
    np.testing.assert_allclose(got[0], got[1], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ 2. akapply: table/MS misfits before Begin
def _errors(exc):
    """{parameter name without a task/block prefix and index: messages} of a ParameterError."""
    out = {}
    for k, v in exc.errors.items():
        out.setdefault(k.split(".")[-1].split("[")[0], []).extend(v)
    return out


@pytest.fixture(scope="module")
def misfits(small, tmp_path_factory):
    """MSs a table solved on ``small`` does not fit: another band (f0 1.5 GHz), circular feeds, other
    antenna names."""
    from casacore.tables import table

    d = tmp_path_factory.mktemp("review25_misfit")
    kw = dict(n_ant=5, n_ant_extra=0, n_chan=(4,), int_s=120.0, scan_len_s=600.0, duration_h=1.0, noise=0.05,
              seed=3, leakage=False, dead_ant=False)
    band, feed, ants = str(d / "band.ms"), str(d / "feed.ms"), str(d / "ants.ms")
    simulate_ms(band, feed="linear", f0=1.5e9, **kw)
    simulate_ms(feed, feed="circular", **kw)
    shutil.copytree(small[0], ants)
    with table(ants + "::ANTENNA", readonly=False, ack=False) as t:
        t.putcol("NAME", ["X%02d" % i for i in range(t.nrows())])
    return {"band": (band, "no overlap"), "feed": (feed, "solved with linear feeds"),
            "ants": (ants, "no antenna of the table")}


def _flag_state(ms):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        return "CORRECTED_DATA" in t.colnames(), t.getcol("FLAG").copy()


@pytest.mark.parametrize("which", ["band", "feed", "ants"])
def test_akapply_table_misfit_is_refused_with_the_other_parameters(misfits, two_cal, which, caplog):
    """A table whose band does not cover the data's, whose feeds differ, or with no antenna name in common
    was refused only after akapply's Begin line (compat.check_tables), alone.  Now before it, under
    gaintable[i], with the call's other bad parameter (interp), and nothing is written."""
    import logging

    from alakazam.caltasks import akapply

    ms, text = misfits[which]
    had_corr, flag0 = _flag_state(ms)
    with caplog.at_level(logging.INFO), pytest.raises(ParameterError) as e:
        akapply(vis=ms, gaintable=[two_cal, two_cal], jones=["K0", "G0"], interp=["nearest", "bogus"],
                applymode="calflag")
    errs = _errors(e.value)
    assert "interp" in errs and any(text in m for m in errs.get("gaintable", [])), errs
    assert "Begin Task" not in caplog.text
    corr, flag = _flag_state(ms)
    assert corr is had_corr is False and np.array_equal(flag, flag0)
    assert not os.path.exists(ms + ".flagversions")


@pytest.mark.parametrize("which", ["band", "feed", "ants"])
def test_yaml_apply_block_table_misfit_is_a_preflight_error(misfits, two_cal, which, tmp_path):
    from alakazam.caltasks.yamlrun import run_yaml

    ms, text = misfits[which]
    y = tmp_path / "a.yaml"
    y.write_text(f"apply:\n  - ms: {ms}\n    tables: [{two_cal}, {two_cal}]\n    jones: [K0, G0]\n"
                 "    time_interp: [nearest, bogus]\n"
                 f"  - ms: {ms}\n    tables: [{two_cal}]\n    jones: [G0]\n")       # (alone)
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    errs = e.value.errors
    for b in (0, 1):
        assert any(k.startswith(f"apply[{b}].tables") and any(text in m for m in v)
                   for k, v in errs.items()), errs
    assert any("time_interp" in k for k in errs), errs
    assert _flag_state(ms)[0] is False and not os.path.exists(ms + ".flagversions")


def test_engine_still_refuses_a_table_misfit(misfits, two_cal):
    """run_apply (the engine, without the task's check) refuses as before, before writing."""
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict

    ms, text = misfits["band"]
    with pytest.raises(AlakazamError, match=text):
        run_apply(apply_config_from_dict(dict(ms=ms, tables=[two_cal], jones=["G0"])))
    assert _flag_state(ms)[0] is False


# ------------------------------------------------------------------ 3. combine='spw' with a bad solint
@pytest.mark.parametrize("jones, freqint, said", [(["K"], "full", "delay is fitted"),
                                                   (["G"], "1MHz", "needs freqint 'full'")])
def test_combine_spw_error_is_reported_with_a_bad_solint(small, tmp_path, jones, freqint, said):
    """A bad solint and an invalid combine='spw' (a delay, or a G per frequency bin) in one call: only the
    solint error was reported (the step was skipped before its combine check)."""
    from alakazam.caltasks import akcal

    out = str(tmp_path / "c.h5")
    with pytest.raises(ParameterError) as e:
        akcal(vis=small[0], caltable=out, field="3C286", jones=jones, solint="bogus", freqint=freqint,
              combine="spw", refant="C00")
    errs = _errors(e.value)
    assert "solint" in errs and any(said in m for m in errs.get("combine", [])), errs
    assert not os.path.exists(out)


# ------------------------------------------------------------------ 4. a refant list naming an antenna twice
@pytest.fixture(scope="module")
def with_idle(tmp_path_factory):
    """4 antennas with data and C01 without any row (ANTENNA id 1)."""
    ms = str(tmp_path_factory.mktemp("review25_idle") / "i.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=1, n_chan=(4,), int_s=120.0, scan_len_s=600.0, duration_h=0.5,
                noise=0.05, seed=1, leakage=False, dead_ant=False)
    return ms


@pytest.mark.parametrize("refant, twice", [(["C00", "C01", "C01"], "C01"),     # C01: no data
                                           (["C00", "C02", "C02"], "C02"),     # C02: data
                                           (["C02", "0", "C00"], "C00")])      # the same by index and name
def test_refant_list_naming_an_antenna_twice_is_a_parameter_error(with_idle, tmp_path, caplog, refant, twice):
    """refant=['C00', 'C01', 'C01'] with C01 without data warned 'skipped, no data' twice and was not
    reported as a repeat (a repeat of an antenna with data was).  Now every repeat is a ParameterError
    naming the antenna, and nothing is logged as skipped for a call that is refused."""
    import logging

    from alakazam.caltasks import akcal

    out = str(tmp_path / "c.h5")
    with caplog.at_level(logging.WARNING), pytest.raises(ParameterError) as e:
        akcal(vis=with_idle, caltable=out, field="3C286", jones=["G"], solint="scan", refant=refant)
    msgs = _errors(e.value).get("refant", [])
    assert any("more than once" in m and repr(twice) in m for m in msgs), e.value.errors
    assert "has no data" not in caplog.text
    assert not os.path.exists(out)


def test_refant_list_with_an_antenna_without_data_still_solves(with_idle, tmp_path, caplog):
    """Once in the list, an antenna without data is left out with one warning (it was said twice: by the
    parameter check and by the run)."""
    import logging

    from alakazam.caltasks import akcal

    out = str(tmp_path / "c.h5")
    with caplog.at_level(logging.WARNING):
        akcal(vis=with_idle, caltable=out, field="3C286", jones=["G"], solint="scan", refant=["C01", "C02"])
    assert os.path.exists(out)
    assert caplog.text.count("antenna 'C01' has no data") == 1


# ------------------------------------------------------------------ 5. the delay's reference frequency
@pytest.fixture(scope="module")
def k_then_g(small, tmp_path_factory):
    """K (solint inf) then G (per scan, one bin) solved on 3C286."""
    from alakazam.caltasks import akcal

    cal = str(tmp_path_factory.mktemp("review25_kg") / "kg.h5")
    akcal(vis=small[0], caltable=cal, field="3C286", jones=["K", "G"], solint=["inf", "scan"], refant="C00")
    return cal


@pytest.mark.parametrize("nu_ref", [0.0, 1.3015e9])
def test_delay_phase_is_referenced_to_absolute_frequency(k_then_g, nu_ref):
    """docs/conventions.md: a K table's delay is applied as exp(-2 pi i tau (nu - delay_ref_hz)), with
    delay_ref_hz = 0 for ours (absolute frequency) and CASA's reference for an imported CASA K table; both
    evaluation paths (diag_table, term_tables) give it."""
    from alakazam.calibration import chain
    from alakazam.io import hdf5

    sets = hdf5.read_term(k_then_g, "K0")
    assert all(float(s.attrs.get("delay_ref_hz", 0.0)) == 0.0 for s in sets)        # ours: 0 Hz
    for s in sets:
        s.attrs["delay_ref_hz"] = nu_ref
    term = chain.term_from_sets("K0", "K", sets)
    s = sets[0]
    names = list(s.ant_names)
    freqs = np.array([1.2e9, 1.3e9, 1.4e9])
    t = s.time[:1]
    tau = s.delay[:, 0, 0, :]                                          # (n_ant, 2) ns
    want = np.exp(-2j * np.pi * 1e-9 * tau[None, :, None, :] * (freqs - nu_ref)[None, None, :, None])
    d, _ = chain.diag_table(term, s.spw, t, freqs, names, "3C286")
    np.testing.assert_allclose(np.broadcast_to(d, want.shape), want, rtol=0, atol=1e-12)
    j, _, _ = chain.term_tables(term, s.spw, t, freqs, names, "3C286")
    np.testing.assert_allclose(np.stack([j[..., 0, 0], j[..., 1, 1]], -1), want, rtol=0, atol=1e-12)
    assert np.abs(tau[1:]).max() > 0.05                                # the test sees the delays


def test_gain_after_a_delay_absorbs_its_phase_at_the_band(small, k_then_g, tmp_path):
    """What the absolute reference implies: the K solve fits the delay with a phase at the band centre
    nu_c that it does not store, and K applies -2 pi tau nu there; the G solved after it absorbs that
    phase.  A K changed by dtau on one antenna moves that antenna's G phase by +2 pi dtau nu_c (nu_c: the
    mean channel frequency), so K*G is unchanged in the band; with CASA's convention (the same K tables
    referenced to nu_c, delay_ref_hz) G does not move.  Hence a K and a G of different calibrators (with
    different delays) do not combine: the phase 2 pi (tau_A - tau_B) nu is left (chainfield.py)."""
    from casacore.tables import table

    from alakazam.caltasks import akcal
    from alakazam.io import hdf5

    ms = small[0]
    with table(ms + "::SPECTRAL_WINDOW", ack=False) as t:
        nu_c = float(np.mean(t.getcell("CHAN_FREQ", 0)))
    dtau = 0.15                                                         # ns
    a = hdf5.read_term(k_then_g, "K0")[0].ant_names.index("C02")

    def g_phases(shift, nu_ref):
        ksets = hdf5.read_term(k_then_g, "K0")
        for s in ksets:
            s.delay[a] += shift
            s.attrs["delay_ref_hz"] = nu_ref
        k = str(tmp_path / f"k_{shift}_{nu_ref}.h5")
        hdf5.write_file(k, {"K0": ksets})
        out = str(tmp_path / f"g_{shift}_{nu_ref}.h5")
        akcal(vis=ms, caltable=out, field="3C286", jones=["G"], solint="scan", refant="C00",
              gaintable=[k], gainjones=["K0"])
        return [np.angle(np.stack([g.jones[..., 0, 0], g.jones[..., 1, 1]], -1))
                for g in hdf5.read_term(out, "G0")]

    def moved(p1, p0):          # (n_ant, n_f, n_t, 2) phase change, wrapped
        return [np.angle(np.exp(1j * (x - y))) for x, y in zip(p1, p0)]

    expect = 2 * np.pi * 1e-9 * dtau * nu_c                            # 1.23 rad at 1.3 GHz
    # (measured: 4e-7 rad off; the phase ramp of dtau across the 4 MHz band decorrelates ~1e-6)
    for d in moved(g_phases(dtau, 0.0), g_phases(0.0, 0.0)):          # ours
        assert np.abs(np.angle(np.exp(1j * (d[a] - expect)))).max() < 1e-4, d[a]
        assert np.abs(np.delete(d, a, axis=0)).max() < 1e-4
    for d in moved(g_phases(dtau, nu_c), g_phases(0.0, nu_c)):        # CASA's reference
        assert np.abs(d).max() < 1e-4, d[a]


def test_apply_one_field_per_time_with_a_gain_flagged_in_one_hand(small, two_cal, tmp_path):
    """akapply to TARGET through chainfield's one calibrator field per time (K0's and G0's nearest fields
    differ in scan 3) of a G0 whose X hand is flagged for C02 in every solution (flags per hand,
    core/handflags.py): the groups' per-hand flag masks are stitched per hand -- before, a
    ValueError from np.broadcast_to in chainfield.compose_groups (found by session 45's review on an
    MS with a permuted correlation order).  C02's X-hand correlations are flagged, its YY corrected."""
    import h5py
    from casacore.tables import table

    from alakazam.caltasks import akapply

    ms, cal = _copy(small[0], tmp_path), str(tmp_path / "kg.h5")
    shutil.copy(two_cal, cal)
    with h5py.File(cal, "r+") as f:
        for name in [n for n in _datasets(f) if n.startswith("G0/") and n.endswith("/pol_flags")]:
            pf = f[name][()]
            pf[2, ..., 0] = True                     # C02's X hand
            f[name][...] = pf
            f[name.replace("pol_flags", "flags")][...] = pf.any(-1)
    akapply(vis=ms, gaintable=[cal, cal], jones=["K0", "G0"], field="TARGET", applymode="calflag")
    with table(ms, ack=False) as t:
        q = t.query("FIELD_ID==2 AND ANTENNA1!=ANTENNA2")
        flag, a1, a2 = q.getcol("FLAG"), q.getcol("ANTENNA1"), q.getcol("ANTENNA2")
        corr = q.getcol("CORRECTED_DATA")
    c02 = (a1 == 2) | (a2 == 2)
    assert c02.any() and (~c02).any()
    x_hand = np.where((a1 == 2)[:, None], [True, True, False, False], [True, False, True, False])
    assert flag[c02][x_hand[c02][:, None, :].repeat(flag.shape[1], 1)].all()
    assert not flag[c02][..., 3].any() and np.isfinite(corr[c02][..., 3]).all()
    assert not flag[~c02].any()


def _datasets(f):
    out = []
    f.visititems(lambda n, o: out.append(n) if hasattr(o, "shape") else None)
    return out


def test_compose_groups_stitches_flag_masks_per_hand_and_per_sample():
    """chainfield.compose_groups with one group's flags per hand (n_t, n_ant, n_chan or 1, 2) and
    another's per sample (n_t, n_ant, n_chan or 1): the stitched mask is per hand, the per-sample
    group's on both hands, each group's at its own times."""
    from alakazam.calibration import chainfield

    n_a, n_c = 3, 4
    per_hand = np.zeros((1, n_a, 1, 2), bool)
    per_hand[:, 1, 0, 0] = True                       # antenna 1, hand X
    per_sample = np.zeros((1, n_a, n_c), bool)
    per_sample[0, 2, 3] = True                        # antenna 2, channel 3

    def compose(ts, spw, times, freqs, names, *rest):
        bad_out = rest[-1]
        bad_out["G0"] = per_hand if ts == "hands" else per_sample
        return np.ones((len(times), n_a, n_c, 2), complex), None

    for order in (("hands", "sample"), ("sample", "hands")):
        parts = [(np.array([0, 2]), order[0]), (np.array([1, 3, 4]), order[1])]
        bad = {}
        chainfield.compose_groups(compose, parts, 0, np.arange(5.0), np.arange(n_c), ["a", "b", "c"],
                                  "T", (0, 0), True, None, None, bad)
        got = bad["G0"]
        assert got.shape == (5, n_a, n_c, 2)
        hands_t = parts[0][0] if order[0] == "hands" else parts[1][0]
        sample_t = parts[1][0] if order[0] == "hands" else parts[0][0]
        want = np.zeros((5, n_a, n_c, 2), bool)
        want[hands_t, 1, :, 0] = True
        want[sample_t, 2, 3, :] = True
        np.testing.assert_array_equal(got, want)
