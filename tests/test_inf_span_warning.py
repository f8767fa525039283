"""calibration/spancheck.py: a full-band gain (G, T) whose one solution spans several scans of a field.

alakazam's time_interval 'inf' is one solution over every selected scan; CASA's gaincal solint='inf' is
one per scan (review 58b, finding 3: a CASA user's "G per scan" on drifting gains became one gain per
field, TARGET scans +20% / -28%, nothing said).  'inf' without combine='scan' is warned about whenever
a cell spans several scans (the drift quoted when the fit shows it); combine='scan' requested only
when the fit shows the gains changing between the scans (chi2/nDOF of the one gain over the per-scan
averages against per-scan gains': scale-free); a bandpass, a per-scan or shorter gain, a single scan:
never.  Each negative case is checked beside a positive control on the same data."""

import pytest

from alakazam.sim import simulate_ms

MSG = "spans several scans"


@pytest.fixture(scope="module")
def two_ms(tmp_path_factory):
    """{drift: MS}: 1 h of 5-min scans cycling 3C286, 3C147, TARGET (4 scans each), gains drifting in
    time (the simulator's time_gains) or constant."""
    d = tmp_path_factory.mktemp("infspan")
    out = {}
    for drift in (True, False):
        ms = str(d / f"s{int(drift)}.ms")
        simulate_ms(ms, n_ant=6, n_ant_extra=0, n_chan=(8,), duration_h=1.0, int_s=60.0, scan_len_s=300.0,
                    noise=0.05, seed=1, time_gains=drift, delays=False, bandpass=False, leakage=False,
                    crosshand=False, dead_ant=False, flag_rows=0.0)
        out[drift] = ms
    return d, out


def _run(solve_warnings, ms, out, **kw):
    d = dict(ms=ms, output=out, ref_ant="C00", field=["3C147"], jones=["G"], apply_parang=True)
    d.update(kw)
    return solve_warnings(MSG, **d)


@pytest.mark.parametrize("jones", ["G", "T"])
def test_inf_over_drifting_scans_is_warned(two_ms, solve_warnings, jones):
    d, ms = two_ms
    if jones == "G":
        w = _run(solve_warnings, ms[True], str(d / "inf_G.h5"), time_interval=["inf"])
    else:   # T after a G per hand over the same interval (a T on the raw hands is dominated by their
        # constant difference, which per-scan T gains cannot take out either: the fit then shows no drift)
        w = _run(solve_warnings, ms[True], str(d / "inf_T.h5"), jones=["G", "T"],
                 time_interval=["inf", "inf"])
        assert len(w) == 2 and w[0].startswith("G0 "), w
        w = w[1:]
    assert len(w) == 1, w
    m = w[0]
    assert m.startswith(f"{jones}0 ({jones}, time_interval inf)"), m
    assert "3C147: 4 scans" in m and "one solution per scan" in m, m
    assert "time_interval 'scan'" in m and "solint='scan'" in m, m
    # the drift, from the fit: quoted as a ratio of chi2/nDOF
    assert "gains changed between those scans" in m and "x that of one gain per scan" in m, m


def test_bandpass_over_scans_is_not_warned(two_ms, solve_warnings):
    """A bandpass (G with frequency bins) over every scan is the recipe: not this warning (driftcheck's
    business); the full-band G of the same block over 'inf' is."""
    d, ms = two_ms
    w = _run(solve_warnings, ms[True], str(d / "bp.h5"), field=["3C286"], jones=["G", "G"],
             time_interval=["inf", "inf"], freq_interval=["2MHz", "full"])
    assert len(w) == 1 and w[0].startswith("G1 (G, time_interval inf)"), w


def test_per_scan_and_shorter_gains_are_not_warned(two_ms, solve_warnings):
    """'scan', per integration, and a duration longer than the gap between scans without combine (its
    cells stop at scan boundaries): no warning; 'inf' on the same data: warned."""
    d, ms = two_ms
    for i, tint in enumerate(["scan", "int", "40min"]):
        assert _run(solve_warnings, ms[True], str(d / f"s{i}.h5"), time_interval=[tint]) == [], tint
    assert len(_run(solve_warnings, ms[True], str(d / "s_inf.h5"), time_interval=["inf"])) == 1


def test_inf_on_one_scan_is_not_warned(two_ms, solve_warnings):
    """3C147's scans are 2, 5, 8, 11: 'inf' on scan 5 alone is one solution per scan; on 5 and 8, two
    scans in one solution."""
    d, ms = two_ms
    assert _run(solve_warnings, ms[True], str(d / "one.h5"), time_interval=["inf"], scan="5") == []
    w = _run(solve_warnings, ms[True], str(d / "two.h5"), time_interval=["inf"], scan="5,8")
    assert len(w) == 1 and "3C147: 2 scans" in w[0], w


def test_combine_scan_requested_warns_only_on_drift(two_ms, solve_warnings):
    """combine='scan' says one gain over the scans is meant: warned only when the fit shows the gains
    changing between them (drift), not on constant gains; 'inf' alone on constant gains is still warned
    (the CASA semantics), saying the fit shows no change."""
    d, ms = two_ms
    for tint, n in (("inf", 4), ("40min", 3)):
        w = _run(solve_warnings, ms[True], str(d / f"c1{tint}.h5"), time_interval=[tint], combine="scan")
        assert len(w) == 1 and "combine 'scan'" in w[0] and f"3C147: {n} scans" in w[0], w
        assert "gains changed between those scans" in w[0], w
        assert _run(solve_warnings, ms[False], str(d / f"c0{tint}.h5"), time_interval=[tint],
                    combine="scan") == []
    w = _run(solve_warnings, ms[False], str(d / "inf0.h5"), time_interval=["inf"])
    assert len(w) == 1 and "does not show the gains changing" in w[0] and "combine 'scan'" in w[0], w


def test_k_over_scans_is_warned_apart(two_ms, solve_warnings):
    """K over 'inf' has a warning of its own (tests/test_k_span_warning.py), not the gain's; the G after
    it has the gain's."""
    d, ms = two_ms
    w = _run(solve_warnings, ms[True], str(d / "k.h5"), jones=["K", "G"], time_interval=["inf", "inf"])
    assert len(w) == 2 and w[0].startswith("K0 (K, time_interval inf)") and "delay solution" in w[0], w
    assert w[1].startswith("G0 (G, time_interval inf)"), w
