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
/work/casavenv/bin/python).  Target (issue 18): alakazam's rms error <= CASA's, the rms taken over
the channels of SEEDS realisations.  Not one: the one-pass error of either tool is dominated by the
leakage of the polarised flux that G absorbs before D is known, a bias of the realisation's leakages
and gains rather than of its noise (alakazam's one pass, noise-free, 11 realisations: 0.00-0.29 deg,
rms 0.19; with noise 0.05 Jy, 41 realisations: rms 0.29).  A small change of the model -- e.g. each
antenna's own parallactic angle instead of the array centre's, CASA's model -- moves a realisation's
bias by ~0.02 deg either way (41 realisations: mean change +0.001 +- 0.003 deg), enough to decide a
comparison of one realisation (seed 31: 0.230 against CASA's 0.213, where the centre's angle gave
0.208).
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
SEEDS = (31, 32, 33)        # the realisations (module docstring); fixed before they were first run


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

    casa_label = "CASA (K, B, G, Kcross, Df 3C147, Xf)"
    base = dict(ref_ant="C00", apply_parang=True, quiet=True, min_bl_per_ant=3)
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
    errs = {k: [] for k in [casa_label, *runs]}
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    for seed in SEEDS:
        d = tmp_path / f"s{seed}"
        d.mkdir()
        ms = str(d / "sim.ms")
        truth = simulate_ms(ms, feed=feed, n_ant=N_ANT, n_chan=(N_CHAN,), int_s=INT_S, scan_len_s=SCAN_S,
                            noise=NOISE, seed=seed, flag_rows=0.0, dead_ant=False, leakage_scale=LEAK,
                            leakage_ref_zero=True)
        r = subprocess.run([py, "-c", textwrap.dedent(CASA_RECIPE)], cwd=str(d), capture_output=True,
                           text=True, timeout=1200, env=env)
        if r.returncode != 0 and "No module named 'casatasks'" in r.stderr:
            pytest.skip("casatasks not installed next to casatools")
        assert r.returncode == 0, r.stderr[-3000:]
        errs[casa_label].append(_cross_hand_error(truth, str(d / "c.Kcross"), "KC", str(d / "c.Xf"), "CP"))
        for n, (label, kw) in enumerate(runs.items()):
            cal = str(d / f"{n}.h5")
            run_solve(solve_config_from_dict(dict(base, ms=ms, output=cal, **kw)))
            errs[label].append(_cross_hand_error(truth, cal, "KC0", cal, "CP0"))
    rms = {k: float(np.sqrt(np.mean(np.square(v)))) for k, v in errs.items()}
    for k, v in errs.items():
        per_seed = ", ".join(f"{np.degrees(np.sqrt(np.mean(e ** 2))):.3f}" for e in v)
        print(f"{feed:8s} {k:45s} cross-hand phase error: rms {np.degrees(rms[k]):.4f} deg "
              f"(seeds {SEEDS}: {per_seed}), max {np.degrees(np.max(v)):.4f} deg")
    casa = rms[casa_label]
    assert casa < np.radians(2.0)               # CASA's recipe worked (a sanity bound, not the target)
    # issue 18's target, for the default order (one pass) and for every other alakazam run
    for k, v in rms.items():
        if k.startswith("alakazam"):
            assert v <= casa, (k, rms)
