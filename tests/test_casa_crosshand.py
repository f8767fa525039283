"""Optional CASA cross-check of the cross-hand phase (issue 18).

The same simulated full-polarisation observation (linear and circular feeds, |d| ~ 0.07, 3C286 with
parallactic-angle coverage, unpolarised 3C147) is calibrated by CASA 6 with its standard recipe --
gaincal K, bandpass, gaincal G, gaincal KCROSS (3C286), polcal Df (3C147), polcal Xf (3C286) -- and
by alakazam, in its default order (KC, CP, D on 3C286), with iterations=3, and in CASA's order (D on
3C147 before CP).  Each is scored against the truth: the cross-hand phase of the KC.CP product at the
reference antenna, per channel (tests/test_flow_fullpol.py derives the expected value:
phi_c - arg(b_ref,p b_ref,q^*) - arg(g_ref,p g_ref,q^*) + 2 pi nu (tau_c + tau_ref,p - tau_ref,q), the
reference antenna's feed phase differences being absorbed), every table evaluated by the same code
(alakazam.calibration.chain; CASA tables read by alakazam.io.casatable, whose conventions are checked
against CASA's applycal in tests/test_casatable.py).

Skipped when no CASA python is found (this interpreter with casatools, $ALAKAZAM_CASA_PYTHON, or
/work/casavenv/bin/python).  Target (issue 18): alakazam's rms error <= CASA's.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import casa_python  # noqa: E402  (tests/casa_python.py)

pytestmark = pytest.mark.casa

TWO_PI_NS = 2 * np.pi * 1e-9
N_ANT, N_CHAN, INT_S, SCAN_S, NOISE, LEAK = 8, 8, 120.0, 600.0, 0.05, 0.05


CASA_RECIPE = """
from casatasks import bandpass, gaincal, polcal
ms = 'sim.ms'
common = dict(refant='C00', minblperant=3)
gaincal(vis=ms, caltable='c.K', field='3C286,3C147', gaintype='K', solint='inf', combine='scan',
        parang=True, **common)
bandpass(vis=ms, caltable='c.B', field='3C286', solint='inf', combine='scan', gaintable=['c.K'],
         parang=True, **common)
gaincal(vis=ms, caltable='c.G', field='3C286,3C147', gaintype='G', calmode='ap', solint='int',
        gaintable=['c.K', 'c.B'], parang=True, **common)
gaincal(vis=ms, caltable='c.Kcross', field='3C286', gaintype='KCROSS', solint='inf', combine='scan',
        gaintable=['c.K', 'c.B', 'c.G'], gainfield=['', '', '3C286'], interp=['', '', 'linear'],
        parang=True, **common)
polcal(vis=ms, caltable='c.Df', field='3C147', poltype='Df', solint='inf', combine='scan',
       gaintable=['c.K', 'c.B', 'c.G', 'c.Kcross'], gainfield=['', '', '3C147', ''],
       interp=['', '', 'linear', ''], **common)
polcal(vis=ms, caltable='c.Xf', field='3C286', poltype='Xf', solint='inf', combine='scan',
       gaintable=['c.K', 'c.B', 'c.G', 'c.Kcross', 'c.Df'], gainfield=['', '', '3C286', '', ''],
       interp=['', '', 'linear', '', ''], **common)
"""


def _cross_hand_error(truth, kc_table, kc_key, cp_table, cp_key):
    """Per-channel |error| (rad) of the cross-hand phase arg(KC_p CP_p^* ...) = -2 pi tau nu - phi at
    the reference antenna, against the truth (module docstring)."""
    from alakazam.calibration import chain

    freqs = truth.spw_freqs[0]
    terms = [chain.load_term(kc_table, kc_key), chain.load_term(cp_table, cp_key)]
    t_mid = np.array([truth.times[len(truth.times) // 2]])
    diag, sky = chain.compose(terms, 0, t_mid, freqs, truth.ant_names, "3C286", None)
    assert sky is None
    xh = np.angle(diag[0, 0, :, 0] * np.conj(diag[0, 0, :, 1]))
    beta = np.angle(truth.bandpass[0][0, :, 0] * np.conj(truth.bandpass[0][0, :, 1]))
    gamma = np.angle(truth.time_gain[0, :, 0] * np.conj(truth.time_gain[0, :, 1]))
    assert np.ptp(np.unwrap(gamma)) < 1e-9          # the derivation needs a constant p - q gain phase
    kc_exp = truth.kc_tau + truth.tau[0, 0] - truth.tau[0, 1]
    cp_exp = truth.cp_phase - beta - gamma[0]
    expected = -TWO_PI_NS * kc_exp * freqs - cp_exp
    return np.abs(np.angle(np.exp(1j * (xh - expected))))


@pytest.mark.slow
@pytest.mark.parametrize("feed", ["linear", "circular"])
def test_cross_hand_phase_against_casa(tmp_path, feed):
    py = casa_python()
    if py is None:
        pytest.skip("CASA (casatools/casatasks) not available")
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve

    ms = str(tmp_path / "sim.ms")
    truth = simulate_ms(ms, feed=feed, n_ant=N_ANT, n_chan=(N_CHAN,), int_s=INT_S, scan_len_s=SCAN_S,
                        noise=NOISE, seed=31, flag_rows=0.0, dead_ant=False, leakage_scale=LEAK,
                        leakage_ref_zero=True)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([py, "-c", textwrap.dedent(CASA_RECIPE)], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=1200, env=env)
    if r.returncode != 0 and "No module named 'casatasks'" in r.stderr:
        pytest.skip("casatasks not installed next to casatools")
    assert r.returncode == 0, r.stderr[-3000:]
    errs = {"CASA (K, B, G, Kcross, Df 3C147, Xf)":
            _cross_hand_error(truth, str(tmp_path / "c.Kcross"), "KC", str(tmp_path / "c.Xf"), "CP")}
    base = dict(ms=ms, ref_ant="C00", apply_parang=True, quiet=True, min_bl_per_ant=3)
    runs = {
        "alakazam K, G, G, KC, CP, D (3C286)": dict(
            jones=["K", "G", "G", "KC", "CP", "D"], field=["3C286"],
            time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
            freq_interval=["full", "1MHz", "full", "full", "1MHz", "full"]),
        "alakazam same, iterations 3": dict(
            jones=["K", "G", "G", "KC", "CP", "D"], field=["3C286"], iterations=3,
            time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
            freq_interval=["full", "1MHz", "full", "full", "1MHz", "full"]),
        "alakazam CASA order (D on 3C147 before CP)": dict(
            jones=["K", "G", "G", "KC", "D", "CP"],
            field=[["3C286", "3C147"], ["3C286"], ["3C286", "3C147"], ["3C286"], ["3C147"], ["3C286"]],
            time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
            freq_interval=["full", "1MHz", "full", "full", "full", "1MHz"]),
    }
    for label, kw in runs.items():
        cal = str(tmp_path / f"{len(errs)}.h5")
        run_solve(solve_config_from_dict(dict(base, output=cal, **kw)))
        errs[label] = _cross_hand_error(truth, cal, "KC0", cal, "CP0")
    rms = {k: float(np.sqrt(np.mean(v ** 2))) for k, v in errs.items()}
    for k, v in errs.items():
        print(f"{feed:8s} {k:45s} cross-hand phase error: rms {np.degrees(rms[k]):.4f} deg, "
              f"max {np.degrees(v.max()):.4f} deg")
    casa = rms["CASA (K, B, G, Kcross, Df 3C147, Xf)"]
    assert casa < np.radians(2.0)               # CASA's recipe worked (a sanity bound, not the target)
    # issue 18's target, for the default order (one pass) and for every other alakazam run
    for k, v in rms.items():
        if k.startswith("alakazam"):
            assert v <= casa, (k, rms)
