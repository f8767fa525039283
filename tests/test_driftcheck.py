"""calibration/driftcheck.py: a bandpass averaged over drifting gains is warned about (its chi2/nDOF far
above the block's shorter gain's), unless a phase-only G of a shorter interval was solved before it;
gains constant in time: no warning."""


import pytest

from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def two_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("drift")
    out = {}
    for drift in (True, False):
        ms = str(d / f"d{int(drift)}.ms")
        simulate_ms(ms, n_ant=6, n_chan=(16,), duration_h=1.5, noise=0.05, seed=1, time_gains=drift,
                    leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0)
        out[drift] = ms
    return d, out


def _solve(ms, out, solve_warnings, **kw):
    d = dict(ms=ms, output=out, ref_ant="C00", field=["3C286"])
    d.update(kw)
    return solve_warnings("bandpass", **d)


def test_bandpass_over_drifting_gains_is_warned(two_ms, solve_warnings):
    d, ms = two_ms
    kw = dict(jones=["K", "G", "G"], time_interval=["inf", "inf", "2min"],
              freq_interval=["full", "1MHz", "full"])
    drift = _solve(ms[True], str(d / "a.h5"), solve_warnings, **kw)
    assert len(drift) == 1 and drift[0].startswith("G0 (bandpass") and "phase-only" in drift[0], drift
    assert _solve(ms[False], str(d / "b.h5"), solve_warnings, **kw) == []          # constant gains: silent


def test_no_warning_with_a_phase_only_g_before_the_bandpass(two_ms, solve_warnings):
    d, ms = two_ms
    assert _solve(ms[True], str(d / "c.h5"), solve_warnings, jones=["K", "G", "G"],
                  time_interval=["scan", "int", "inf"], freq_interval=["full", "full", "1MHz"],
                  phase_only=[False, True, False]) == []
