"""Time interpolation and frequency mapping against hand-computed values."""

import numpy as np
import pytest

from alakazam.core.interpolation import delay_to_jones, interp_delay_time, interp_time, map_freq
from alakazam.errors import AlakazamError


def _jones(vals):
    """(1 ant, 1 freq, n_t, 2, 2) diagonal with vals on both pols."""
    j = np.zeros((1, 1, len(vals), 2, 2), complex)
    j[0, 0, :, 0, 0] = vals
    j[0, 0, :, 1, 1] = vals
    return j


def test_nearest_and_linear_amp_phase_with_wrap():
    t = np.array([0.0, 10.0])
    g = np.array([1.0 * np.exp(1j * 3.0), 2.0 * np.exp(1j * (-3.0))])   # phase wraps through pi
    j, f = interp_time(t, _jones(g), np.zeros((1, 1, 2), bool), np.array([2.0, 5.0, 12.0]), "linear")
    # amplitude 1 -> 2 linear; phase 3 -> 2 pi - 3 (unwrapped) linear
    expect_amp = np.array([1.2, 1.5, 2.0])
    expect_ph = 3.0 + (2 * np.pi - 6.0) * np.array([0.2, 0.5, 1.0])
    np.testing.assert_allclose(j[0, 0, :, 0, 0], expect_amp * np.exp(1j * expect_ph), atol=1e-12)
    assert not f.any()
    j, _ = interp_time(t, _jones(g), np.zeros((1, 1, 2), bool), np.array([4.0, 6.0]), "nearest")
    np.testing.assert_allclose(j[0, 0, :, 0, 0], g)


def test_flagged_samples_are_not_bridged():
    """A flagged solution flags the target times that use it (CASA 6.7; tests/test_interp_flags.py):
    linear between a valid and a flagged one, and at its own time, is flagged -- not interpolated
    between the valid ones around it; values between two valid solutions are unchanged."""
    t = np.array([0.0, 10.0, 20.0, 30.0])
    g = np.array([1.0, 100.0, 3.0, 4.0], complex)
    flags = np.array([[[False, True, False, False]]])
    j, f = interp_time(t, _jones(g), flags, np.array([5.0, 10.0, 15.0, 25.0]), "linear")
    assert f[0, 0].tolist() == [True, True, True, False]
    assert np.isnan(j[0, 0, :3]).all()
    np.testing.assert_allclose(j[0, 0, 3, 0, 0], 3.5)
    j, f = interp_time(t, _jones(g), flags, np.array([4.0, 6.0, 14.0, 16.0]), "nearest")
    assert f[0, 0].tolist() == [False, True, True, False]
    np.testing.assert_allclose(j[0, 0, [0, 3], 0, 0], [1.0, 3.0])
    j, f = interp_time(t, _jones(g), np.ones((1, 1, 4), bool), np.array([10.0]), "linear")
    assert f.all() and np.isnan(j).all()


def test_cubic_needs_four_samples():
    t = np.arange(5.0)
    g = (1 + t ** 2 / 10).astype(complex)
    j, _ = interp_time(t, _jones(g), np.zeros((1, 1, 5), bool), np.array([1.5]), "cubic")
    assert abs(j[0, 0, 0, 0, 0] - (1 + 1.5 ** 2 / 10)) < 1e-3
    with pytest.raises(AlakazamError, match="time_interp"):
        interp_time(t[:3], _jones(g[:3]), np.zeros((1, 1, 3), bool), np.array([1.5]), "cubic")


def test_map_freq_and_delay_to_jones():
    idx, d = map_freq(np.array([1e9]), np.linspace(1e9, 1.1e9, 5))
    assert d == "broadcast 1->5" and (idx == 0).all()
    f = np.linspace(1e9, 1.1e9, 4)
    idx, d = map_freq(f, f)
    assert d == "pass-through" and (idx == np.arange(4)).all()
    idx, d = map_freq(np.array([1e9, 1.1e9]), np.array([1.01e9, 1.09e9, 1.2e9]))
    assert d == "nearest 2->3" and list(idx) == [0, 1, 1]
    # delay sign: phase = -2 pi tau nu
    delay = np.full((1, 2, 1, 2), 2.0)        # 2 ns
    nu = np.array([1.0e9, 1.25e9])
    j = delay_to_jones(delay, nu, "K")
    np.testing.assert_allclose(np.angle(j[0, :, 0, 0, 0] / j[0, 0, 0, 0, 0]),
                               np.angle(np.exp(-2j * np.pi * 2e-9 * (nu - nu[0]))))
    jkc = delay_to_jones(delay, nu, "KC")
    assert np.all(jkc[..., 1, 1] == 1)
    d2, f2 = interp_delay_time(np.array([0.0, 10.0]), np.stack([np.zeros((1, 1, 2)), np.ones((1, 1, 2))], 2),
                               np.zeros((1, 1, 2), bool), np.array([5.0]), "linear")
    np.testing.assert_allclose(d2, 0.5)
