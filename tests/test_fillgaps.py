"""akcal fillgaps (CASA bandpass's; calibration/fillgaps.py): the convention of the module docstring on
synthetic solutions, and end to end on a bandpass whose persistent-RFI channel is flagged."""

import numpy as np
import pytest

from alakazam.calibration.fillgaps import fill_set
from alakazam.caltasks import akcal
from alakazam.errors import ParameterError
from alakazam.io import hdf5
from alakazam.io.hdf5 import SolutionSet
from alakazam.sim import simulate_ms


def _set(n_f=10, n_t=2, n_ant=3, seed=0, descending=False):
    rng = np.random.default_rng(seed)
    freq = 1.4e9 + 1e6 * np.arange(n_f)
    if descending:
        freq = freq[::-1].copy()
    jones = np.zeros((n_ant, n_f, n_t, 2, 2), complex)
    for p in (0, 1):
        amp = 1 + 0.3 * rng.random((n_ant, n_f, n_t))
        jones[..., p, p] = amp * np.exp(1j * rng.uniform(-3, 3, (n_ant, n_f, n_t)))
    flags = np.zeros((n_ant, n_f, n_t), bool)
    s = SolutionSet(jones=jones, flags=flags, time=np.arange(n_t, dtype=float), freq=freq,
                    attrs={"field_name": "F", "spw": 0})
    s.extra = {"snr": np.full((n_ant, n_f, n_t, 2), 50.0)}
    return s


def _flag(s, a, bins, t=0):
    s.flags[a, bins, t] = True
    s.jones[a, bins, t] = np.nan


@pytest.mark.parametrize("descending", [False, True])
def test_runs_up_to_fillgaps_interior_only_amp_and_phase_linear(descending):
    s = _set(descending=descending)
    # channel order = bin order ascending in frequency; for descending freq, bin k has channel n-1-k
    ch = (lambda c: 9 - c) if descending else (lambda c: c)
    _flag(s, 0, [ch(2)])                        # gap of 1: filled
    _flag(s, 0, [ch(5), ch(6)])                 # gap of 2: filled
    _flag(s, 1, [ch(3), ch(4), ch(5)])          # gap of 3 > 2: stays
    _flag(s, 2, [ch(0)])                        # band edge: stays
    _flag(s, 2, [ch(9)])                        # band edge: stays
    ref = s.jones.copy()
    n = fill_set(s, 2)
    assert n == 3
    assert not s.flags[0, :, 0].any()
    assert s.flags[1, [ch(3), ch(4), ch(5)], 0].all() and s.flags[2, [ch(0), ch(9)], 0].all()
    assert not s.flags[:, :, 1].any()
    f = s.freq
    for (lo, hi, mids) in [(1, 3, [2]), (4, 7, [5, 6])]:
        for m in mids:
            w = (f[ch(m)] - f[ch(lo)]) / (f[ch(hi)] - f[ch(lo)])
            for p in (0, 1):
                a0, a1 = ref[0, ch(lo), 0, p, p], ref[0, ch(hi), 0, p, p]
                amp = (1 - w) * abs(a0) + w * abs(a1)
                dphi = np.angle(a1 / a0)                      # the shorter way, in (-pi, pi]
                want = amp * np.exp(1j * (np.angle(a0) + w * dphi))
                assert abs(s.jones[0, ch(m), 0, p, p] - want) < 1e-12
            assert s.jones[0, ch(m), 0, 0, 1] == 0 and s.jones[0, ch(m), 0, 1, 0] == 0
            assert (s.extra["snr"][0, ch(m), 0] == 0).all()            # not solved
    # nothing else changed
    untouched = np.ones(s.flags.shape, bool)
    untouched[0, [ch(2), ch(5), ch(6)], 0] = False
    np.testing.assert_array_equal(s.jones[untouched], ref[untouched])      # NaN where flagged, as before


def test_phase_interpolates_across_pi_the_short_way_and_zero_is_off():
    s = _set(n_f=3, n_t=1, n_ant=1)
    s.jones[0, 0, 0, 0, 0] = np.exp(1j * 3.0)
    s.jones[0, 2, 0, 0, 0] = np.exp(-1j * 3.0)            # 0.28 rad apart through pi
    _flag(s, 0, [1])
    before = s.jones.copy()
    assert fill_set(s, 0) == 0 and s.flags[0, 1, 0]
    assert np.array_equal(np.isnan(s.jones), np.isnan(before))
    assert fill_set(s, 1) == 1
    assert abs(abs(np.angle(s.jones[0, 1, 0, 0, 0])) - np.pi) < 1e-12


def test_a_neighbour_without_both_pols_is_not_bridged():
    s = _set(n_f=5, n_t=1, n_ant=1)
    _flag(s, 0, [2])
    s.jones[0, 3, 0, 1, 1] = np.nan                       # one pol of a neighbour missing
    assert fill_set(s, 1) == 0 and s.flags[0, 2, 0]


@pytest.fixture(scope="module")
def rfi_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("fillgaps")
    ms = str(d / "r.ms")
    truth = simulate_ms(ms, feed="circular", n_ant=6, n_ant_extra=0, n_chan=(16,), duration_h=1.0, int_s=60,
                        scan_len_s=600, noise=0.02, seed=3, delays=False, time_gains=False, leakage=False,
                        crosshand=False, dead_ant=False, flag_rows=0.0, rfi_persistent={0: [6]})
    return ms, truth


def _bandpass(ms, out, **kw):
    res = akcal(vis=ms, caltable=out, refant="C00", jones=["G"], field="3C286", solint="inf", combine="scan",
                freqint="1MHz", minblperant=0, **kw)
    (s,) = hdf5.read_term(out, "G0")
    # the summary counts what is stored: flagged after the fill, and the filled
    t = res["terms"]["G0"]
    assert t["flagged"] == int(s.flags.sum()) and t["filled"] == (6 * 1 if kw.get("fillgaps") else 0)
    return s


def test_rfi_channel_filled_within_the_noise_of_its_neighbours(rfi_ms, tmp_path):
    ms, truth = rfi_ms
    plain = _bandpass(ms, str(tmp_path / "a.h5"))
    assert plain.flags[:, 6].all() and not np.delete(plain.flags, 6, axis=1).any()
    filled = _bandpass(ms, str(tmp_path / "b.h5"), fillgaps=1)
    assert not filled.flags.any()
    # every other channel as solved; the RFI channel is fill_set of the plain solutions
    assert np.array_equal(np.delete(filled.jones, 6, axis=1), np.delete(plain.jones, 6, axis=1))
    fill_set(plain, 1)
    assert np.allclose(filled.jones, plain.jones, rtol=0, atol=1e-12)
    # against the truth: the error at the filled channel is that of the linear interpolation of the true
    # bandpass (a curvature term) plus at most the neighbours' errors (the noise)
    tb = truth.bandpass[0]                                   # (n_ant, n_chan, 2), the active antennas
    assert tb.shape[:2] == filled.jones.shape[:2]
    tb = tb * np.exp(-1j * np.angle(tb[:1]))                  # referenced to C00's phase per channel and pol
    true = _set(n_f=16, n_t=1, n_ant=tb.shape[0])
    true.freq = filled.freq
    true.jones[:] = 0
    for p in (0, 1):
        true.jones[:, :, 0, p, p] = tb[:, :, p]
    exact = tb[:, 6].copy()
    _flag(true, slice(None), [6])
    fill_set(true, 1)
    curv = np.abs(np.stack([true.jones[:, 6, 0, p, p] for p in (0, 1)], -1) - exact)
    got = np.stack([filled.jones[:, 6, 0, p, p] for p in (0, 1)], -1)
    nbr_err = np.maximum(*[np.abs(np.stack([filled.jones[:, c, 0, p, p] for p in (0, 1)], -1) - tb[:, c])
                           for c in (5, 7)])
    err = np.abs(got - exact)
    assert (err <= curv + nbr_err + 1e-9).all(), (err, curv, nbr_err)
    assert err.max() < 0.05


def test_fillgaps_bad_value_is_a_parameter_error(rfi_ms, tmp_path):
    ms, _ = rfi_ms
    with pytest.raises(ParameterError, match="fillgaps"):
        _bandpass(ms, str(tmp_path / "c.h5"), fillgaps=-1)


def test_summary_counts_the_flags_as_written(rfi_ms, tmp_path):
    """The step's summary (and log line) count the solutions flagged as written: the filled ones are
    not flagged any more; ``filled`` says how many."""
    ms, _ = rfi_ms
    out = str(tmp_path / "s.h5")
    summ = akcal(vis=ms, caltable=out, refant="C00", jones=["G"], field="3C286", solint="inf", combine="scan",
                 freqint="1MHz", minblperant=0, fillgaps=1)
    (s,) = hdf5.read_term(out, "G0")
    t = summ["terms"]["G0"]
    assert t["flagged"] == int(s.flags.sum()) == 0
    assert t["filled"] == s.flags.shape[0] * 1 * s.flags.shape[2]      # channel 6 of every antenna


def test_a_later_step_of_the_block_pre_applies_the_filled_bandpass(rfi_ms, tmp_path):
    """fillgaps runs when a step's sets are complete, before the next step pre-applies them: so, as
    with solnorm, the block is solved step by step (not field by field, where every step of a field is
    solved before any step is finished)."""
    ms, _ = rfi_ms
    kw = dict(vis=ms, refant="C00", jones=["G", "G"], field="3C286", solint=["inf", "inf"], combine="scan",
              freqint=["1MHz", "full"], minblperant=0)
    plain = akcal(caltable=str(tmp_path / "p.h5"), **kw)
    assert plain["field_major"]                                    # the small MS: field by field
    out = str(tmp_path / "f.h5")
    filled = akcal(caltable=out, fillgaps=1, **kw)
    assert not filled["field_major"] and filled["terms"]["G0"]["filled"] > 0
    # G1 equals G solved with the written (filled) G0 pre-applied
    ref = str(tmp_path / "r.h5")
    akcal(vis=ms, caltable=ref, refant="C00", jones=["G"], field="3C286", solint="inf", combine="scan",
          freqint="full", minblperant=0, gaintable=[out], gainjones=["G0"])
    (a,), (b,) = hdf5.read_term(out, "G1"), hdf5.read_term(ref, "G0")
    assert np.array_equal(a.flags, b.flags) and not a.flags.all()
    np.testing.assert_allclose(a.jones[~a.flags], b.jones[~b.flags], rtol=1e-9, atol=1e-12)
