"""Review of session 26's user-visible changes (per-hand solution flags, solve weights, calwt), tried as a
user would; each test pins a defect found (docs/README "Solution flags per polarisation", "Which weights
a solve uses", "CASA parameters" calwt)."""

import os
import sys

import numpy as np
import pytest

from alakazam.io import hdf5
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_ms_variety import recorrelate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rr_only_ms(ms, rr_spw):
    """A circular-feed MS whose SPW ``rr_spw`` records RR only (uGMRT-like single-pol SPW beside a
    4-correlation one; the simulator's DATA_DESC_ID 0 is SPW 1)."""
    simulate_ms(ms, feed="circular", n_ant=5, n_ant_extra=0, n_chan=(4, 4), int_s=120.0, scan_len_s=600.0,
                duration_h=0.5, noise=0.05, seed=3, leakage=False, crosshand=False, parang_in_data=False,
                dead_ant=False, flag_rows=0.0, time_gains=False, bandpass=False)
    from casacore.tables import table

    with table(ms + "::DATA_DESCRIPTION", ack=False) as t:
        spw_of = list(t.getcol("SPECTRAL_WINDOW_ID"))
    dd_rr = spw_of.index(rr_spw)
    recorrelate(ms, {dd: ([0] if dd == dd_rr else [0, 1, 2, 3]) for dd in range(len(spw_of))})
    return ms


@pytest.fixture(scope="module")
def rr_only(tmp_path_factory):
    """SPW 0 RR only, G solved per scan: (MS, table)."""
    from alakazam.caltasks import akcal

    d = tmp_path_factory.mktemp("rr_only")
    ms = _rr_only_ms(str(d / "rr.ms"), 0)
    cal = str(d / "rr.h5")
    akcal(vis=ms, caltable=cal, field="3C286", refant="C00", jones=["G"], solint=["scan"])
    return ms, cal


def test_akinfo_does_not_call_an_unrecorded_hand_flagged(rr_only):
    """akinfo's 'flagged p/q' of an RR-only SPW: the L hand is not recorded (attr hands [0]; pol_flags
    stores it flagged), so it is shown as '-', not as '100.0%' (which reads as a dead L feed); the
    4-correlation SPW shows both hands.  The 'flagged' column already counts recorded hands only."""
    from rich.console import Console

    _, cal = rr_only
    rows = {r["spw"]: r for r in hdf5.summary(cal) if r["key"] == "G0"}
    assert rows[0]["flagged_hands"] == [0.0, None] and rows[0]["flagged"] == 0.0
    assert rows[1]["flagged_hands"] == [0.0, 0.0]
    con = Console(width=250, record=True)
    con.print(hdf5.summary_table(cal))
    text = con.export_text()
    assert "0.0% / -" in text and "/ 100.0%" not in text


def test_plot_does_not_draw_an_unrecorded_hand(rr_only):
    """akplot of the RR-only SPW: no L curve and no 'flagged' crosses (the L hand is not recorded; it was
    drawn as a row of grey crosses at 0 on every antenna, as if the L feeds were all dead); the
    4-correlation SPW draws both hands."""
    from alakazam import plots

    _, cal = rr_only
    series = {s.spw: s for s in plots.load_series(hdf5.read_term(cal, "G0"), "G0")}
    for spw, want in ((0, {"R"}), (1, {"R", "L"})):
        s = series[spw]
        fig = plots.antenna_figure([s], s.ant_names[1], float(s.time[0]))
        labels = {ln.get_label() for ax in fig.axes for ln in ax.get_lines()}
        drawn = {lab for lab in labels if lab in ("R", "L")}
        assert drawn == want, (spw, labels)
        assert plots.FLAG_LABEL not in labels, (spw, labels)


def test_calwt_help_states_the_weights_written():
    """akapply's calwt help (XML, hence README's YAML table and the shell's inp) said the weights are
    scaled by 1/(amp_p amp_q)^2 -- the inverted rule fixed this session (calibration/calwt.py writes
    |g_a g_b|^2 / SIGMA^2, CASA 6.7 applycal); README's 'CASA parameters' line said 1 / (SIGMA^2 |g|^2)."""
    from alakazam import schema

    short = schema.spec("apply", "calwt").short
    assert "1/(amp" not in short and "(amp_p amp_q)^2 / SIGMA^2" in short, short
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "1 / (SIGMA^2 |g_p,a|^2 |g_q,b|^2)" not in readme and "1/(amp_p amp_q)^2" not in readme


@pytest.mark.parametrize("rr_spw", [0, 1])
def test_combine_spw_records_the_hands_of_every_combined_spw(tmp_path, rr_spw):
    """combine='spw' over an RR-only SPW and a 4-correlation one solves both hands (L from the
    4-correlation SPW), so every stored copy records hands [0, 1].  The attribute was taken from the
    unit's first SPW alone: [0] when that was the RR-only one (DATA_DESC_ID 0, SPW 1 here), so ``flags``
    ignored the L hand's flags and akinfo / akplot hid a solved hand; which SPW came first decided it."""
    from alakazam.caltasks import akcal

    ms = _rr_only_ms(str(tmp_path / "rr.ms"), rr_spw)
    cal = str(tmp_path / "c.h5")
    akcal(vis=ms, caltable=cal, field="3C286", refant="C00", jones=["G"], solint=["scan"], combine="spw")
    sets = hdf5.read_term(cal, "G0")
    assert sorted({s.spw for s in sets}) == [0, 1]
    for s in sets:
        assert [int(h) for h in s.attrs["hands"]] == [0, 1], (s.spw, s.attrs["hands"])
        assert not s.hand_flags().any() and np.isfinite(s.jones[..., 1, 1]).all()


def test_casa_caltable_of_a_single_pol_spw_reads_back_its_hands(rr_only, tmp_path):
    """Export of the RR-only SPW's G to a CASA caltable writes FLAG True for the unrecorded pol (as CASA
    6.7 gaincal does on a single-pol MS); reading it back (akapply/akcal gaintable) gave flags True for
    every antenna (the 'not whole' rule over both pols) -- every solution of the SPW looked flagged.  It
    now reads back as written: hands [0], flags as solved, the recorded hand's values kept."""
    from alakazam.io import casatable

    ms, cal = rr_only
    out = str(tmp_path / "g.tb")
    casatable.export(cal, "G0", out, ms=ms)
    back = {b.spw: b for b in casatable.read_table(out)}
    for s in hdf5.read_term(cal, "G0"):
        b = back[s.spw]
        assert [int(h) for h in b.attrs.get("hands", (0, 1))] == [int(h) for h in s.attrs["hands"]], s.spw
        np.testing.assert_array_equal(b.flags, s.flags)
        np.testing.assert_array_equal(b.hand_flags(), s.hand_flags())
        np.testing.assert_allclose(b.jones[..., 0, 0], s.jones[..., 0, 0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("hours", [1.0, 0.5])
def test_log_names_a_hand_solved_with_a_fallback_reference(tmp_path, caplog, hours):
    """The refant's p feed dead in 3C286's first scan of a 4-correlation MS: that scan is solved with the next
    refant in both hands (a cell's reference has both hands: session 55, review 55c; C00's q hand is still
    solved).  With a second 3C286 scan (1 h) it is bridged to C00 there; without one (0.5 h) C01 is the
    step's reference for both hands and the log says why: C00 has no usable p hand (it said nothing
    (1 h), or that C00 was the reference of no cell (0.5 h), before session 26; until session 55 the p
    hand alone took C01)."""
    import logging

    from alakazam.caltasks import akcal
    from test_pol_flags import _kill_hand

    ms = str(tmp_path / "k.ms")       # 6 antennas: 4 baselines per antenna left in p (minblperant 4)
    simulate_ms(ms, feed="linear", n_ant=6, n_ant_extra=0, n_chan=(8,), int_s=120.0, scan_len_s=600.0,
                duration_h=hours, noise=0.05, seed=3, leakage=False, crosshand=False, parang_in_data=False,
                dead_ant=False, flag_rows=0.0, time_gains=False, bandpass=False)
    _kill_hand(ms, 0, 0, scan=1)
    with caplog.at_level(logging.INFO, logger="alakazam"):
        akcal(vis=ms, caltable=str(tmp_path / "k.h5"), field="3C286", refant="C00,C01", jones=["K"],
              solint=["scan"])
    k = {s.scan_id: s for s in hdf5.read_term(str(tmp_path / "k.h5"), "K0")}
    assert (np.asarray(k[1].extra["ref_ant"]) == 1).all()
    assert (np.asarray(k[1].extra["ref_ant_hand"]) == 1).all()
    pf = k[1].hand_flags()
    assert pf[0, ..., 0].all() and not np.delete(pf, 0, 0).any() and not pf[..., 1].any()
    msgs = [r.getMessage() for r in caplog.records if "K0 (K) field 3C286 spw 0" in r.getMessage()]
    if hours == 1.0:
        assert [list(x.attrs["ref_ant_hands"]) for x in k.values()] == [[0, 0], [0, 0]]
        assert len(msgs) == 1 and "solved with C01: 1 re-referenced to C00 (bridged)" in msgs[0], msgs
    else:
        assert list(k[1].attrs["ref_ant_hands"]) == [1, 1]
        assert len(msgs) == 1 and "refant C00 has no usable p hand in any cell" in msgs[0] and \
            "C01 is the reference instead, of both" in msgs[0], msgs


def test_yaml_apply_block_with_missing_ms_reports_its_missing_table(tmp_path):
    """README ('Safety'): the preflight reports the tables to read that do not exist 'also in an apply
    block whose own ms ... bad'.  With the MS missing (the block parses; its MS check fails first) the
    missing table went unreported until the MS was fixed."""
    from alakazam.errors import ParameterError
    from alakazam.caltasks.yamlrun import run_yaml

    y = tmp_path / "a.yaml"
    y.write_text("apply:\n  - ms: nothere.ms\n    jones: [K0]\n    tables: [missing.h5]\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    assert "apply[0].ms" in e.value.errors
    assert any("missing.h5" in m for m in e.value.errors.get("apply[0].tables[0]", [])), e.value.errors


def test_single_pol_dof_counts_the_recorded_hand_only(tmp_path):
    """rchi2 (and the SNR derived from it) counted the parameters of both hands against the samples of
    the one an RR-only MS records: with 4 antennas (minblperant 3) a G cell had 2 x 6 samples and 14
    'parameters', so DOF < 0, rchi2 NaN, SNR 0 and minsnr flagged every solution of the single-pol
    SPW (the 4-correlation SPW beside it solved fine); with 5 antennas rchi2 came out ~5x too large.
    Now each hand's parameters count only where it has data: the RR-only SPW's solutions are unflagged,
    equal to the 4-correlation MS's p hand, with rchi2 near 1 (noise-only data)."""
    from casacore.tables import table

    from alakazam.caltasks import akcal

    out = {}
    for kind in ("four", "rr"):
        ms = str(tmp_path / f"{kind}.ms")
        simulate_ms(ms, feed="circular", n_ant=4, n_ant_extra=0, n_chan=(4, 4), int_s=120.0, scan_len_s=600.0,
                    duration_h=0.5, noise=0.05, seed=3, leakage=False, crosshand=False, parang_in_data=False,
                    dead_ant=False, flag_rows=0.0, time_gains=False, bandpass=False, delays=False)
        if kind == "rr":
            with table(ms + "::DATA_DESCRIPTION", ack=False) as t:
                spw_of = list(t.getcol("SPECTRAL_WINDOW_ID"))
            recorrelate(ms, {dd: ([0] if spw_of[dd] == 0 else [0, 1, 2, 3]) for dd in range(len(spw_of))})
        cal = str(tmp_path / f"{kind}.h5")
        akcal(vis=ms, caltable=cal, field="3C286,3C147", refant="C00", jones=["G"], solint=["scan"],
              minblperant=3)
        out[kind] = {(s.spw, s.scan_id): s for s in hdf5.read_term(cal, "G0")}
    for key, s in out["rr"].items():
        f = out["four"][key]
        assert not s.hand_flags()[..., 0].any(), key
        np.testing.assert_allclose(s.jones[..., 0, 0], f.jones[..., 0, 0], rtol=0, atol=1e-9)
        r = float(np.asarray(s.extra["rchi2"]).ravel()[0])
        assert 0.2 < r < 3.0, (key, r)

