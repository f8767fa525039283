"""Time interpolation does not depend on the gauge (core/interpolation.py, "Phase unwrapping").

A phase common to every antenna of one solution time cancels in every baseline, so ``linear`` and
``cubic`` must give the same baseline products g_a conj(g_b) between the solutions whatever such phase
each solution time carries (review 58b: cells re-referenced through another antenna carried common
offsets of 0.8-3 rad, and each antenna's phase taken the short way round on its own decorrelated the
baselines in between: a TARGET scan 12% low)."""

import numpy as np
import pytest

from alakazam.core.interpolation import common_phase, interp_time


def _gains(rng, n_ant=12, n_f=3, n_t=6, drift=0.4):
    """Diagonal gains whose phases move by at most ``drift`` rad between solutions (no antenna's own
    step is ambiguous), amplitudes ~1, antenna 0 the reference (phase 0)."""
    ph = (np.cumsum(rng.uniform(-drift, drift, (n_ant, n_f, n_t, 2)), axis=2)
          + rng.uniform(-np.pi, np.pi, (n_ant, n_f, 1, 2)))
    ph[0] = 0.0
    amp = rng.uniform(0.8, 1.2, (n_ant, n_f, n_t, 2))
    j = np.zeros((n_ant, n_f, n_t, 2, 2), complex)
    j[..., 0, 0] = amp[..., 0] * np.exp(1j * ph[..., 0])
    j[..., 1, 1] = amp[..., 1] * np.exp(1j * ph[..., 1])
    return j


def _baselines(j):
    """(n_ant, n_ant, n_f, n_tt, 2) g_a conj(g_b) per hand."""
    d = np.stack([j[..., 0, 0], j[..., 1, 1]], axis=-1)
    return d[:, None] * np.conj(d[None, :])


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_common_phase_per_time_leaves_baselines_unchanged(mode):
    rng = np.random.default_rng(5)
    j = _gains(rng)
    n_ant, n_f, n_t = j.shape[:3]
    t = np.arange(n_t) * 600.0
    tt = np.linspace(t[0], t[-1], 97)
    flags = np.zeros((n_ant, n_f, n_t), bool)
    ref, fref = interp_time(t, j, flags, tt, mode)
    # a common phase per (solution time, freq bin, hand) anywhere in (-pi, pi]: e.g. 2.9 rad
    off = rng.uniform(-np.pi, np.pi, (1, n_f, n_t, 2))
    off[..., 2, 0] = 2.9
    jr = j.copy()
    jr[..., 0, 0] *= np.exp(1j * off[..., 0])
    jr[..., 1, 1] *= np.exp(1j * off[..., 1])
    got, fgot = interp_time(t, jr, flags, tt, mode)
    assert not fref.any() and not fgot.any()
    np.testing.assert_allclose(_baselines(got), _baselines(ref), atol=1e-9)
    # and the solutions themselves at their own times
    at, _ = interp_time(t, jr, flags, t, mode)
    np.testing.assert_allclose(at, jr, atol=1e-12)


def test_without_ambiguous_steps_the_result_is_the_per_antenna_unwrap():
    """Where no antenna's own phase step is near pi, the interpolation is the plain per-antenna one
    (amplitude and unwrapped phase, each linear): the same values as before the common phase."""
    rng = np.random.default_rng(7)
    j = _gains(rng, drift=0.3)
    n_ant, n_f, n_t = j.shape[:3]
    t = np.arange(n_t) * 300.0
    tt = np.linspace(t[0], t[-1], 41)
    got, _ = interp_time(t, j, np.zeros((n_ant, n_f, n_t), bool), tt, "linear")
    for a in range(n_ant):
        for f in range(n_f):
            for h in range(2):
                y = j[a, f, :, h, h]
                want = np.interp(tt, t, np.abs(y)) * np.exp(1j * np.interp(tt, t, np.unwrap(np.angle(y))))
                np.testing.assert_allclose(got[a, f, :, h, h], want, atol=1e-12)


def test_flagged_solutions_and_a_lone_antenna():
    """Flags still as before (a target between a flagged solution and a valid one is flagged), and the
    common phase of a time with one antenna valid is that antenna's own step."""
    rng = np.random.default_rng(11)
    j = _gains(rng, n_ant=4, n_f=1, n_t=5)
    t = np.arange(5) * 100.0
    flags = np.zeros((4, 1, 5), bool)
    flags[1:, 0, 2] = True              # only antenna 0 valid at t=200
    tt = np.array([50.0, 150.0, 250.0, 350.0])
    out, of = interp_time(t, j, flags, tt, "linear")
    assert of[1:, 0, 1].all() and of[1:, 0, 2].all()        # bracketed by a flagged solution
    assert not of[:, 0, 0].any() and not of[:, 0, 3].any()
    c = common_phase(j, ~flags)
    assert c.shape == (1, 5, 4) and (c[..., 1:3] == 0).all()
