"""calibration/spancheck.py, K: a parallel-hand delay whose one solution spans several scans of a field.

alakazam's time_interval 'inf' is one solution over every selected scan; CASA's gaincal gaintype='K',
solint='inf' is one K per scan.  A K over scans whose gains drift is biased where the channels' mix of
scans differs (session 55's review: 1.7-2.5 ns on every antenna with the reference antenna flagged in half
the band in one scan).  'inf' without combine='scan' is warned whenever a K cell spans several scans (the
per-scan fits' largest departure quoted); combine='scan' only when a per-scan delay departs from the
combined one by more than spancheck.K_SIGMA formal errors and turns the band's edges by more than
spancheck.K_FLOOR_DEG; K per scan, KC 'inf': never.  The delays solved are bit for bit those without the
check."""

import shutil

import numpy as np
import pytest

from alakazam.sim import simulate_ms

MSG = "spans several scans"


def _sim(path, drift, seed):
    simulate_ms(path, n_ant=6, n_ant_extra=0, n_chan=(32,), duration_h=1.0, int_s=60.0, scan_len_s=300.0,
                noise=0.05, seed=seed, time_gains=drift, delays=True, bandpass=False, leakage=False,
                crosshand=True, dead_ant=False, flag_rows=0.0)
    return path


def _flag_half_band(ms, ant, scan_index, whole=False):
    """FLAG antenna ``ant``'s baselines in the lower half of the band (``whole``: all of it) in 3C147's
    ``scan_index``-th scan."""
    from casacore.tables import table

    with table(ms, readonly=False, ack=False) as t:
        scans = sorted(set(t.getcol("SCAN_NUMBER")[t.getcol("FIELD_ID") == 1].tolist()))
        fl = t.getcol("FLAG")
        sel = (((t.getcol("ANTENNA1") == ant) | (t.getcol("ANTENNA2") == ant))
               & (t.getcol("SCAN_NUMBER") == scans[scan_index]))
        fl[sel, : fl.shape[1] // (1 if whole else 2), :] = True
        t.putcol("FLAG", fl)


@pytest.fixture(scope="module")
def kms(tmp_path_factory):
    """1 h of 5-min scans cycling 3C286, 3C147, TARGET (3C147: scans 2, 5, 8, 11), 32 x 1 MHz channels:
    gains drifting in time (seed 1), the same with C00 (the reference) flagged in half the band in
    scan 5 (the hazard), or with C03 so flagged, and constant gains (seeds 1-3)."""
    d = tmp_path_factory.mktemp("kspan")
    out = {"drift": _sim(str(d / "drift.ms"), True, 1)}
    for name, ant in (("hazard", 0), ("c03", 3)):
        out[name] = str(d / f"{name}.ms")
        shutil.copytree(out["drift"], out[name])
        _flag_half_band(out[name], ant, 1)
    for seed in (1, 2, 3):
        out[f"const{seed}"] = _sim(str(d / f"const{seed}.ms"), False, seed)
    out["noref"] = str(d / "noref.ms")
    shutil.copytree(out["const1"], out["noref"])
    _flag_half_band(out["noref"], 0, 1, whole=True)
    return d, out


def _run(solve_warnings, ms, out, **kw):
    d = dict(ms=ms, output=out, ref_ant="C00", field=["3C147"], jones=["K"], apply_parang=True,
             time_interval=["inf"])
    d.update(kw)
    return solve_warnings(MSG, **d)


def test_k_inf_over_scans_is_warned(kms, solve_warnings):
    """The CASA trap: K 'inf' without combine over 3C147's 4 scans is warned, naming the step, the field,
    the scans, CASA's meaning and both remedies, with the per-scan fits' figure."""
    d, ms = kms
    w = _run(solve_warnings, ms["drift"], str(d / "inf.h5"))
    assert len(w) == 1, w
    m = w[0]
    assert m.startswith("K0 (K, time_interval inf)") and "3C147: 4 scans" in m, m
    assert "gaintype='K', solint='inf' gives one per scan" in m, m
    assert "solint='scan'" in m and "combine='scan'" in m, m
    assert "largest per-scan departure" in m and " ns" in m, m


@pytest.mark.parametrize("which", ["c03", "hazard"])
def test_k_combine_scan_warned_when_biased(kms, solve_warnings, which):
    """combine='scan' on drifting gains whose channels' mix of scans differs (an antenna flagged in half
    the band in one scan; the reference antenna: the review's hazard): the per-scan delays depart from the
    combined one beyond the noise: warned, the departure quoted; 'inf' alone too."""
    d, ms = kms
    for combine in ("scan", None):
        kw = {"combine": combine} if combine else {}
        w = _run(solve_warnings, ms[which], str(d / f"{which}{combine}.h5"), **kw)
        assert len(w) == 1, w
        assert "3C147: 4 scans" in w[0] and "Its delays are biased" in w[0], w
        assert "times its formal error" in w[0], w
        assert w[0].startswith("K0 (K, time_interval inf, combine 'scan')" if combine
                               else "K0 (K, time_interval inf): one delay solution"), w


def test_k_combine_scan_constant_gains_silent(kms, solve_warnings):
    """Constant gains, three noise seeds: combine='scan' says nothing (and 'inf' alone says the per-scan
    fits do not show a bias)."""
    d, ms = kms
    for seed in (1, 2, 3):
        assert _run(solve_warnings, ms[f"const{seed}"], str(d / f"c{seed}.h5"), combine="scan") == [], seed
    w = _run(solve_warnings, ms["const1"], str(d / "c_inf.h5"))
    assert len(w) == 1 and "do not show it biased" in w[0], w


def test_k_reference_absent_in_a_scan_silent(kms, solve_warnings):
    """Constant gains with the reference antenna (C00) flagged whole in one of 3C147's scans: that
    scan's own fit has no reference data (its delays are still differences to the reference's, whose
    parameters the fit leaves where they started), so combine='scan' says nothing and 'inf' says the
    per-scan fits (the other scans measured) do not show a bias."""
    d, ms = kms
    assert _run(solve_warnings, ms["noref"], str(d / "noref_c.h5"), combine="scan") == []
    w = _run(solve_warnings, ms["noref"], str(d / "noref_inf.h5"))
    assert len(w) == 1 and "do not show it biased" in w[0], w


def test_k_per_scan_silent(kms, solve_warnings):
    """K per scan on the hazard MS: no warning (each cell is one scan)."""
    d, ms = kms
    assert _run(solve_warnings, ms["hazard"], str(d / "scan.h5"), time_interval=["scan"]) == []


def test_kc_inf_over_scans_silent(kms, solve_warnings):
    """KC 'inf' over every scan of 3C286 is the recipe: not warned (the K and G per scan before it
    neither)."""
    d, ms = kms
    w = _run(solve_warnings, ms["drift"], str(d / "kc.h5"), field=["3C286"], jones=["K", "G", "KC"],
             time_interval=["scan", "scan", "inf"])
    assert w == [], w


def test_k_values_unchanged_by_the_check(kms, monkeypatch, tmp_path):
    """The check's second accumulation pass leaves the cell's sums alone: the delays solved with it are
    bit for bit those without it (the budget at 0: nothing kept, nothing measured)."""
    from alakazam.calibration import spancheck
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.io import hdf5

    _, ms = kms
    got = []
    for budget in (spancheck.K_BUDGET_BYTES, 0):
        monkeypatch.setattr(spancheck, "K_BUDGET_BYTES", budget)
        out = str(tmp_path / f"b{budget}.h5")
        run_solve(solve_config_from_dict(dict(ms=ms["hazard"], output=out, ref_ant="C00", field=["3C147"],
                                              jones=["K"], time_interval=["inf"], apply_parang=True,
                                              quiet=True)))
        sets = hdf5.read_term(out, "K0")
        got.append([np.array(s.delay if getattr(s, "delay", None) is not None else s.jones) for s in sets])
    assert len(got[0]) == len(got[1]) > 0
    for a, b in zip(*got):
        assert np.array_equal(a, b, equal_nan=True)


def test_k_over_budget_warned_without_figure(kms, solve_warnings, monkeypatch):
    """Per-scan sums above spancheck.K_BUDGET_BYTES are not kept: 'inf' is warned without a measured
    figure and says so; combine='scan' is not warned."""
    from alakazam.calibration import spancheck

    d, ms = kms
    monkeypatch.setattr(spancheck, "K_BUDGET_BYTES", 0)
    w = _run(solve_warnings, ms["hazard"], str(d / "budget.h5"))
    assert len(w) == 1 and "Not measured" in w[0] and "MiB budget" in w[0], w
    assert _run(solve_warnings, ms["hazard"], str(d / "budget_c.h5"), combine="scan") == []


def test_k_floor_is_a_phase_at_the_band_edges():
    """The departure that counts is one turning the edges of the cell's band by K_FLOOR_DEG: 0.02 ns
    across 128 MHz (the fixed floor it replaced), 4x that across 32 MHz, 0.0013 ns across a 2 GHz
    baseband -- where a 0.01 ns departure at 10 formal errors (3.6 deg at the edges) is significant and
    was kept silent by the fixed floor; one channel has no delay to depart."""
    from alakazam.calibration import spancheck

    f = lambda bw: 1.0e9 + np.linspace(0.0, bw, 64)          # noqa: E731 -- channel centres (Hz)
    assert spancheck.k_floor_ns(f(128e6)) == pytest.approx(0.02, rel=0.01)
    assert spancheck.k_floor_ns(f(32e6)) == pytest.approx(0.08, rel=0.01)
    assert spancheck.k_floor_ns(f(2e9)) == pytest.approx(0.00128, rel=0.01)
    assert spancheck.k_floor_ns([1.4e9]) == np.inf and spancheck.k_floor_ns([]) == np.inf
    assert spancheck._k_significant(0.01, 10.0, spancheck.k_floor_ns(f(2e9)))
    assert not spancheck._k_significant(0.01, 10.0, spancheck.k_floor_ns(f(128e6)))
    assert not spancheck._k_significant(0.05, 4.0, spancheck.k_floor_ns(f(2e9)))      # within the noise
