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


def test_the_remedy_fits_the_block(two_ms, solve_warnings, monkeypatch):
    """An iterated block whose rounds have not converged was told CASA's recipe only (a review against
    truth: intermittent RFI on an 8-channel SPW left the full-polarisation example's 3C286 5.8x the noise
    after its 3 rounds, 1.09x after 6; CASA's recipe 10.9x). It is now told to raise iterations; a
    one-round block with a shorter gain gets iterations or CASA's recipe."""
    d, ms = two_ms
    kw = dict(jones=["K", "G", "G"], time_interval=["inf", "inf", "2min"],
              freq_interval=["full", "1MHz", "full"])
    one = _solve(ms[True], str(d / "r1.h5"), solve_warnings, **kw)
    assert len(one) == 1 and "iterations: 3 or more" in one[0] and "CASA's recipe" in one[0]
    # rounds that have not converged: intermittent RFI on 8 channels at 3C286's ~1500 sigma per sample,
    # time gains per integration (measured: still warned after 2 and 3 rounds; 2 rounds converge on the
    # 16-channel MS above, and are silent)
    # (since session 48 a re-solved K carries its band-centre phase change into the previous round's
    # later gains, solve_rounds.carry_delay_phase, and these 2 rounds converge; without that carry they
    # do not -- the state this remedy is for)
    import alakazam.solve_rounds as solve_rounds
    monkeypatch.setattr(solve_rounds, "carry_delay_phase", lambda g, k_old, k_new: g)
    narrow = str(d / "narrow.ms")
    simulate_ms(narrow, n_ant=6, n_chan=(8,), duration_h=1.5, noise=0.01, seed=1, leakage=False,
                crosshand=False, dead_ant=False, flag_rows=0.0, rfi_intermittent=True)
    two = _solve(narrow, str(d / "r2.h5"), solve_warnings, iterations=2, jones=["K", "G", "G"],
                 time_interval=["scan", "inf", "int"], freq_interval=["full", "1MHz", "full"])
    assert len(two) == 1 and "This block's 2 rounds re-solve the bandpass" in two[0] and "e.g. to 4" in two[0]
    monkeypatch.undo()
    assert not _solve(narrow, str(d / "r2c.h5"), solve_warnings, iterations=2, jones=["K", "G", "G"],
                      time_interval=["scan", "inf", "int"], freq_interval=["full", "1MHz", "full"])
    alone = _solve(ms[True], str(d / "r3.h5"), solve_warnings, jones=["K", "G"], time_interval=["inf", "inf"],
                   freq_interval=["full", "1MHz"])
    assert len(alone) == 1 and "iterations" not in alone[0] and "CASA's recipe" in alone[0]
