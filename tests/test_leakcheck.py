"""calibration/leakcheck.py: gains solved before D on a polarised calibrator in one round are warned
about, with the size of the leakage they absorbed (|d| x the model's cross/parallel power ratio), also in
CASA's order (D on an unpolarised calibrator, the gains and CP on the polarised one); not with
iterations, not for a small leakage, not without a polarised calibrator."""


import numpy as np
import pytest

from alakazam.io import hdf5
from alakazam.sim import simulate_ms

CHAIN = dict(jones=["K", "G", "G", "KC", "CP", "D"], field=["3C286"],
             time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
             freq_interval=["full", "1MHz", "full", "full", "1MHz", "full"])


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    d = tmp_path_factory.mktemp("leakcheck")
    out = {}
    for leak in (0.05, 0.0005):
        ms = str(d / f"l{leak}.ms")
        out[leak] = simulate_ms(ms, feed="linear", n_ant=8, n_chan=(8,), int_s=120.0, scan_len_s=600.0,
                                noise=0.05, seed=31, flag_rows=0.0, dead_ant=False, leakage_scale=leak,
                                leakage_ref_zero=True), ms
    return d, out


def _solve(ms, out, solve_warnings, **kw):
    d = dict(ms=ms, output=out, ref_ant="C00", apply_parang=True, min_bl_per_ant=3)
    d.update(kw)
    return solve_warnings("before D0 (D", **d)


def test_one_round_with_polarised_leakage_is_warned(sims, solve_warnings):
    d, s = sims
    truth, ms = s[0.05]
    out = str(d / "one.h5")
    notes = _solve(ms, out, solve_warnings, **CHAIN)
    assert len(notes) == 1, notes
    assert notes[0].startswith("K0, G0, G1 solved on 3C286 before D0 (D)") and "iterations: 3" in notes[0]
    # the size it quotes: the largest unflagged |d| of the stored D (the truth's within its noise)
    (dset,) = hdf5.read_term(out, "D0")
    dmax = np.abs(np.stack([dset.jones[..., 0, 1], dset.jones[..., 1, 0]], -1)).max()
    assert f"|d| up to {dmax:.3f}" in notes[0]
    assert abs(dmax - np.abs(truth.leakage).max()) < 0.01
    # 3C286 in the simulator: 11.2% linearly polarised; the cross-hand power ratio of the linear feed
    # frame is rms(U_feed) / I, below it and above half of it over this track
    frac = float(notes[0].split("the model's cross hands ")[1].split(" ")[0])
    assert 0.05 < frac < 0.112


def test_no_warning_with_iterations_or_small_leakage(sims, solve_warnings):
    d, s = sims
    assert _solve(s[0.05][1], str(d / "three.h5"), solve_warnings, iterations=3, **CHAIN) == []
    assert _solve(s[0.0005][1], str(d / "small.h5"), solve_warnings, **CHAIN) == []


CASA_ORDER = dict(jones=["K", "G", "G", "KC", "D", "CP"],
                  field=[["3C286", "3C147"], ["3C286"], ["3C286", "3C147"], ["3C286"], ["3C147"],
                         ["3C286"]],
                  time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
                  freq_interval=["full", "1MHz", "full", "full", "full", "1MHz"])


def test_casa_order_d_on_an_unpolarised_calibrator_is_warned(sims, solve_warnings):
    """CASA's order, D on the unpolarised 3C147: the gains solved on 3C286 absorbed 3C286's leakage all
    the same; the CP step on 3C286 measured its polarised fraction, which sizes it.  Iterations remove
    it (later rounds pre-apply the D to every step, whatever field it was solved on)."""
    d, s = sims
    truth, ms = s[0.05]
    out = str(d / "casa.h5")
    notes = _solve(ms, out, solve_warnings, **CASA_ORDER)
    assert len(notes) == 1, notes
    assert notes[0].startswith("K0, G0, G1 solved on 3C286 before D0 (D on 3C147) was known, in one "
                               "round"), notes[0]
    (dset,) = hdf5.read_term(out, "D0")
    dmax = np.abs(np.stack([dset.jones[..., 0, 1], dset.jones[..., 1, 0]], -1)).max()
    assert f"|d| up to {dmax:.3f}" in notes[0]
    frac = float(notes[0].split("the model's cross hands ")[1].split(" ")[0])
    assert 0.05 < frac < 0.112          # 3C286's, as in the one-field chain above
    assert _solve(ms, str(d / "casa3.h5"), solve_warnings, iterations=3, **CASA_ORDER) == []


def test_no_warning_without_a_polarised_calibrator(sims, solve_warnings):
    """Every term on the unpolarised 3C147: its gains absorbed no polarised leakage."""
    d, s = sims
    kw = dict(jones=["K", "G", "G", "D"], field=["3C147"], time_interval=["scan", "inf", "int", "inf"],
              freq_interval=["full", "1MHz", "full", "full"])
    assert _solve(s[0.05][1], str(d / "unpol.h5"), solve_warnings, **kw) == []


def test_pre_applied_gains_are_warned_with_the_one_block_remedy(sims, solve_warnings):
    """The CASA-style sequence of calls: the gains and cross-hand terms in one run, D in another with
    them pre-applied (akcal gaintable).  No round of the D's block re-solves them, so iterations do
    not silence it, and the remedy is one block for all the terms."""
    d, s = sims
    ms = s[0.05][1]
    first = str(d / "first.h5")
    _solve(ms, first, solve_warnings, jones=["K", "G", "G", "KC", "CP"], field=["3C286"],
           time_interval=["scan", "inf", "int", "inf", "inf"],
           freq_interval=["full", "1MHz", "full", "full", "1MHz"])
    ext = dict(external_preapply=dict(tables=[first] * 5, jones=["K0", "G0", "G1", "KC0", "CP0"]))
    for n in (1, 3):
        notes = _solve(ms, str(d / f"second{n}.h5"), solve_warnings, jones=["D"], field=["3C286"],
                       time_interval=["inf"], freq_interval=["full"], iterations=n, **ext)
        assert len(notes) == 1, notes
        assert notes[0].startswith("K0, G0, G1 solved on 3C286 before D0 (D) was known, in another run")
        assert "in one block with iterations: 3" in notes[0]


def _casa_sequence(sims, name, solve_warnings, **second):
    """CASA's sequence of calls on the |d| 0.05 MS: K, G, G on both calibrators in one run, then KC, D
    on 3C147 and CP on 3C286 in another with those gains pre-applied; the second run's warnings."""
    d, s = sims
    ms = s[0.05][1]
    first = str(d / f"{name}_first.h5")
    _solve(ms, first, solve_warnings, jones=["K", "G", "G"], field=CASA_ORDER["field"][:3],
           time_interval=["scan", "inf", "int"], freq_interval=["full", "1MHz", "full"])
    ext = dict(external_preapply=dict(tables=[first] * 3, jones=["K0", "G0", "G1"]))
    return _solve(ms, str(d / f"{name}_second.h5"), solve_warnings, jones=["KC", "D", "CP"],
                  field=[["3C286"], ["3C147"], ["3C286"]], time_interval=["inf", "inf", "inf"],
                  freq_interval=["full", "full", "1MHz"], **second, **ext)


def test_casa_sequence_of_calls_is_warned(sims, solve_warnings):
    """CASA's sequence of calls: gaincal (K, G on both calibrators) in one run, then polcal Df on the
    unpolarised 3C147 and Xf on 3C286 in another with the gains pre-applied.  No gain step of the
    second block measures 3C286's parallel hands: its CP step does, from a sample of its rows as read
    (unit._measures_model_power)."""
    notes = _casa_sequence(sims, "seq", solve_warnings)
    assert len(notes) == 1, notes
    assert notes[0].startswith("K0, G0, G1 solved on 3C286 before D0 (D on 3C147) was known, in another "
                               "run (pre-applied)"), notes[0]
    frac = float(notes[0].split("the model's cross hands ")[1].split(" ")[0])
    assert 0.05 < frac < 0.112


def test_no_ratio_measured_with_a_d_pre_applied(sims, solve_warnings, monkeypatch):
    """A D pre-applied to the block (external_preapply): the D and CP steps' models carry that D's
    leakage (d x I), which must not be read as the calibrator's polarisation (in CASA's order, now
    refused with a pre-applied D, it named the unpolarised 3C147 'polarised' at 0.107).  No ratio is
    measured, so nothing is warned: the gains were solved with that D.  Without the D pre-applied the
    same block measures 3C286's ratio (the contrast: the test can fail)."""
    from alakazam.calibration import leakcheck

    seen = []
    real = leakcheck._polarised_fields
    monkeypatch.setattr(leakcheck, "_polarised_fields", lambda steps: seen.append(real(steps)) or seen[-1])
    d, s = sims
    ms = s[0.05][1]
    first = str(d / "d_first.h5")
    _solve(ms, first, solve_warnings, **CHAIN)
    assert set(seen[-1]) == {"3C286"}
    ext = dict(external_preapply=dict(tables=[first], jones=["D0"]))
    assert _solve(ms, str(d / "d_second.h5"), solve_warnings, **CHAIN, **ext) == []
    assert seen[-1] == {}


def test_gains_combined_over_fields_are_named(sims, solve_warnings):
    """A gain solved with combine='field' is one set named '3C286+3C147': it was solved on 3C286 too."""
    d, s = sims
    notes = _solve(s[0.05][1], str(d / "comb.h5"), solve_warnings,
                   combine=["field", "", "", "", "", ""], **CASA_ORDER)
    assert len(notes) == 1 and notes[0].startswith("K0, G0, G1 solved on 3C286 before D0 (D on 3C147)"), \
        notes


def test_casa_sequence_with_iterations_is_warned(sims, solve_warnings):
    """The second call of CASA's sequence with iterations: no round re-solves the pre-applied gains, so
    the warning stays; from round 2 on CP's model carries the block's D, and the first round's
    measurement is kept (unit._Context.cp_model_power)."""
    notes = _casa_sequence(sims, "seqi", solve_warnings, iterations=2)
    assert len(notes) == 1 and "in another run (pre-applied)" in notes[0], notes


def test_field_names_with_a_plus_are_not_split(tmp_path, solve_warnings):
    """Calibrator names hold '+' (J1331+3030, 1331+305=3C286): only a combine='field' set's
    ``combined_fields`` name several fields.  The unpolarised calibrator renamed J0542+4951 with
    every gain and the D on it, KC and CP on the polarised J1331+3030: nothing absorbed 3C286's
    leakage (a review: 'solved on 3030' with 3C286's ratio)."""
    from casacore.tables import table

    ms = str(tmp_path / "plus.ms")
    simulate_ms(ms, feed="linear", n_ant=8, n_chan=(8,), int_s=120.0, scan_len_s=600.0, noise=0.05,
                seed=31, flag_rows=0.0, dead_ant=False, leakage_scale=0.05, leakage_ref_zero=True)
    with table(ms + "/FIELD", readonly=False, ack=False) as t:
        names = list(t.getcol("NAME"))
        t.putcol("NAME", [{"3C286": "J1331+3030", "3C147": "J0542+4951"}.get(n, n) for n in names])
    kw = dict(jones=["K", "G", "G", "KC", "D", "CP"],
              field=[["J0542+4951"], ["J0542+4951"], ["J0542+4951"], ["J1331+3030"], ["J0542+4951"],
                     ["J1331+3030"]],
              time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
              freq_interval=["full", "1MHz", "full", "full", "full", "1MHz"])
    assert _solve(ms, str(tmp_path / "a.h5"), solve_warnings, **kw) == []
    kw["field"] = [["J1331+3030", "J0542+4951"], ["J1331+3030"]] + kw["field"][2:]
    notes = _solve(ms, str(tmp_path / "b.h5"), solve_warnings, **kw)
    assert len(notes) == 1 and notes[0].startswith("K0, G0 solved on J1331+3030 before D0 (D on "
                                                   "J0542+4951)"), notes


def test_d_on_an_unpolarised_calibrator_in_casas_gauge_notes_the_reference_leakage(tmp_path, solve_warnings):
    """Linear feeds, CASA's gauge, D on the unpolarised 3C147 (review 60i): every antenna's leakage is
    relative to the reference's own, which 3C147 cannot fix and which is no symmetry of polarised sources
    (3C286's V 0.6% of I there, as CASA's): noted, sized by the antennas' typical |d| and 3C286's
    fraction, with the absolute-gauge remedy; and the CP misfit note's remedy names that D.  D on the
    polarised 3C286 in the absolute gauge (the README's recipe) says nothing of it."""
    from casacore.tables import table

    ms = str(tmp_path / "g.ms")
    simulate_ms(ms, feed="linear", n_ant=8, n_chan=(8,), int_s=120.0, scan_len_s=600.0, noise=0.02,
                seed=31, flag_rows=0.0, dead_ant=False, time_gains=False)
    with table(ms, readonly=False, ack=False) as t:      # 3C147's model at its true 2.5 Jy (D fits it)
        q = t.query("FIELD_ID==1")
        q.putcol("MODEL_DATA", q.getcol("MODEL_DATA") * 2.5)
    casa = dict(jones=["K", "G", "G", "KC", "D", "CP"],
                field=[["3C286"], ["3C286"], ["3C286"], ["3C286"], ["3C147"], ["3C286"]],
                time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
                freq_interval=["full", "1MHz", "full", "full", "full", "1MHz"])
    w = solve_warnings("an unpolarised calibrator does not fix", ms=ms, output=str(tmp_path / "c.h5"),
                       ref_ant="C00", apply_parang=True, **casa)
    assert len(w) == 1, w
    assert w[0].startswith("D0 (D) on 3C147, linear feeds, CASA's gauge:"), w[0]
    assert "as polarised as 3C286" in w[0] and "leakage_gauge: absolute" in w[0], w[0]
    recipe = dict(jones=["K", "G", "G", "KC", "CP", "D"], field=["3C286"],
                  time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
                  freq_interval=["full", "1MHz", "full", "full", "1MHz", "full"])
    assert solve_warnings("an unpolarised calibrator does not fix", ms=ms, output=str(tmp_path / "r.h5"),
                          ref_ant="C00", apply_parang=True, leakage_gauge="absolute", iterations=3,
                          **recipe) == []


def test_d_on_a_polarised_calibrator_with_an_unpolarised_model_is_not_called_unpolarised(tmp_path,
                                                                                          solve_warnings):
    """Linear feeds, CASA's gauge, D on 3C286 whose MODEL_DATA is Stokes I only (setjy without its
    polarisation; review h60j): the gauge note called 3C286 'an unpolarised calibrator' and told to
    'solve D on the polarised calibrator' -- 3C286 itself -- beside the misfit note that names the
    actual fault (a polarised calibrator with an unpolarised model).  Only the misfit note is said."""
    from casacore.tables import table

    ms = str(tmp_path / "i.ms")
    simulate_ms(ms, feed="linear", n_ant=6, n_chan=(8,), int_s=120.0, scan_len_s=600.0, noise=0.02,
                seed=31, flag_rows=0.0, dead_ant=False, time_gains=False)
    with table(ms, readonly=False, ack=False) as t:      # 3C286's model: I only
        q = t.query("FIELD_ID==0")
        m = q.getcol("MODEL_DATA")
        i = (m[..., 0] + m[..., 3]) / 2
        m[..., 0], m[..., 3], m[..., 1], m[..., 2] = i, i, 0, 0
        q.putcol("MODEL_DATA", m)
    w = solve_warnings("", ms=ms, output=str(tmp_path / "i.h5"), ref_ant="C00", apply_parang=True,
                       jones=["K", "G", "D"], field=["3C286"], time_interval=["scan", "int", "inf"])
    assert not [x for x in w if "an unpolarised calibrator does not fix" in x], w
    assert [x for x in w if x.startswith("D0 (D) on field(s) 3C286: one solution per scan fits")], w


def test_cp_misfit_remedy_names_the_absolute_gauge_on_linear_feeds_only():
    """The CP misfit note's remedy names a D solved on another calibrator in CASA's gauge and
    leakage_gauge: absolute (review 60i, linear feeds); on circular feeds 'absolute' is refused
    (parang_check), so the remedy there is the model's, as before (review h60j)."""
    from types import SimpleNamespace

    from alakazam.calibration import misfitcheck
    from alakazam.io.hdf5 import SolutionSet

    def sets(field, feed):
        s = SolutionSet(jones=np.ones((4, 1, 1, 2, 2), complex), flags=np.zeros((4, 1, 1), bool),
                        time=np.zeros(1), freq=np.zeros(1))
        s.attrs = {"feed_basis": feed, "field_name": field}
        s.diagnostics = {"crosshand_misfit": {"band": (1.0, 0.0), "time": (50.0, 0.05)}}
        return [s]

    steps = [SimpleNamespace(key="D0", jones_type="D"), SimpleNamespace(key="CP0", jones_type="CP")]
    cfg = SimpleNamespace(leakage_gauge="reference", steps=steps)
    for feed, named in (("linear", True), ("circular", False)):
        d0 = sets("3C147", feed)
        d0[0].diagnostics = {}
        out = misfitcheck.notes(cfg, {"D0": d0, "CP0": sets("3C286", feed)})
        assert len(out) == 1 and out[0].startswith("CP0 (CP) on field(s) 3C286"), out
        assert ("leakage_gauge: absolute" in out[0]) == named, (feed, out[0])
