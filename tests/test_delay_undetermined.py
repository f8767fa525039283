"""A delay needs data at two or more frequencies: K (per hand) and KC cells whose unflagged data lie at
one frequency -- a one-channel SPW, or a channel selection of one channel -- are flagged with reason
``delay_undetermined`` (solvers/quality.delay_undetermined).  They came out 0.000 ns, unflagged and
"converged" (a review: an SPW of 1 channel among SPWs of 16, 8 and 4; CASA flagged them)."""

import logging

import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.io import hdf5
from alakazam.sim import simulate_ms
from alakazam.sim.cells import make_batch
from alakazam.solvers import SolveOptions, solve
from alakazam.solvers.quality import delay_undetermined


@pytest.fixture(scope="module")
def one_channel_ms(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("onech") / "o.ms")
    truth = simulate_ms(ms, feed="linear", n_ant=5, n_chan=(16, 1), noise=0.02, seed=3, leakage=False,
                        duration_h=0.5)
    return ms, truth


def test_k_on_a_one_channel_spw_is_flagged_with_its_reason(one_channel_ms, tmp_path, caplog):
    ms, _ = one_channel_ms
    out = str(tmp_path / "k.h5")
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akcal(vis=ms, caltable=out, jones=["K"], solint=["inf"], refant="C00", field="0")
    sets = hdf5.read_term(out, "K0")
    by_spw = {int(s.attrs["spw"]): s for s in sets}
    assert not by_spw[0].flags.all() and np.isfinite(by_spw[0].delay[~by_spw[0].flags]).all()
    assert by_spw[1].flags.all()                      # one channel: no delay
    assert "two or more frequencies" in caplog.text


def test_a_cell_with_one_frequency_per_hand():
    """Per hand for K (one hand at one channel: that hand only), over both cross hands for KC; cells
    with two or more frequencies solve as before."""
    b, _ = make_batch("K", n_cell=3, n_ant=5, n_samp=8, noise=0.0, seed=2)
    b.weight[1, :, 1:, 0] = 0                          # cell 1: the first hand at one channel
    b.weight[2, :, 1:, :] = 0                          # cell 2: both hands at one channel
    d = delay_undetermined(b, (0, 3), True)                  # (n_cell, n_ant, 2)
    assert not d[0].any() and d[1, :, 0].all() and not d[1, :, 1].any() and d[2].all()
    res = solve("K", b, "numba", SolveOptions(flag_nonconverged=True))
    pol = res.extra["pol_flags"]
    assert not pol[0].any() and pol[1, :, 0].all() and not pol[1, :, 1].any() and pol[2].all()
    assert res.extra["delay_undetermined"][1:].all() and not res.extra["delay_undetermined"][0].any()
    kc, _ = make_batch("KC", n_cell=2, n_ant=5, n_samp=8, noise=0.0, seed=4)
    kc.weight[1, :, 1:, :] = 0
    assert delay_undetermined(kc, (1, 2), False).tolist() == [False, True]
    r = solve("KC", kc, "numba", SolveOptions(flag_nonconverged=True))
    assert not r.flags[0].any() and r.flags[1].all() and r.extra["delay_undetermined"][1].all()


def test_one_antenna_at_one_frequency():
    """Per antenna: an antenna whose baselines keep one channel (the others flagged for it) has no delay
    -- flagged in that hand; the other antennas keep theirs (a review: 127 ns against 1.4, unflagged)."""
    b, _ = make_batch("K", n_cell=1, n_ant=5, n_samp=8, noise=0.0, seed=5)
    on3 = (b.ant1 == 3) | (b.ant2 == 3)
    b.weight[0][on3, 1:, :] = 0                        # antenna 3: channel 0 only, both hands
    d = delay_undetermined(b, (0, 3), True)
    assert d[0, 3].all() and not d[0, [0, 1, 2, 4]].any()
    res = solve("K", b, "numba", SolveOptions(flag_nonconverged=True))
    pol = res.extra["pol_flags"]
    assert pol[0, 3].all() and not pol[0, [0, 1, 2, 4]].any()
    why = res.extra["delay_undetermined"]
    assert why[0, 3] and not why[0, [0, 1, 2, 4]].any()


@pytest.mark.parametrize("hands", [(0,), (0, 1)])
def test_a_reference_at_one_frequency_references_nothing(hands):
    """The reference antenna (hand) left with one channel has no delay: it references nothing -- the cell
    is solved with the next reference, in both hands (a reference has both hands: session 55, review 55c),
    and every other antenna's delay is its own relative to that one; antenna 0's other hand is still
    solved.  Before, it stayed the reference and the others took its aliased delay as a common offset per
    hand (a review: 129.6 / 53.7 ns, a false cross-hand delay of 76 ns)."""
    b, truth = make_batch("K", n_cell=1, n_ant=5, n_samp=16, noise=0.0, seed=7)
    on0 = (b.ant1 == 0) | (b.ant2 == 0)
    for h in hands:                                     # antenna 0 (the reference): channel 3 only
        keep = np.zeros(b.weight.shape[2], bool)
        keep[3] = True
        b.weight[0][np.ix_(on0, ~keep, [(0, 3)[h]])] = 0
    res = solve("K", b, "numba", SolveOptions(flag_nonconverged=True))
    pol = res.extra["pol_flags"]
    tau = truth["tau"][0]                               # (n_ant, 2) ns
    for h in (0, 1):
        r = int(res.extra["ref_ant_hand"][0, h])
        assert r != 0, res.extra["ref_ant_hand"]
        assert pol[0, 0, h] == (h in hands)
        ok = ~pol[0, :, h]
        np.testing.assert_allclose(res.delay[0, ok, h], (tau[:, h] - tau[r, h])[ok], atol=1e-6)


@pytest.mark.parametrize("keep_one", [True, False])
def test_a_one_channel_hand_leaves_the_others_delays_alone(tmp_path, keep_one):
    """A second review's case: hand q of the reference C00 left with one channel (its baselines' other
    channels flagged) on the default simulated MS, K over 'inf': that hand's samples left its (delay,
    phase) free along a line, which the fit did not settle -- the other antennas' q delays came out with
    a scatter of 0.17 ns (C03 +0.23 ns), where the hand flagged whole gave 0.002 ns.  They are now taken
    out of the solve: the same delays either way (the one channel kept or flagged too)."""
    from casacore.tables import table as ctable

    ms = str(tmp_path / "o.ms")
    truth = simulate_ms(ms, seed=0)
    with ctable(ms, readonly=False, ack=False) as t:
        q = t.query("DATA_DESC_ID==0 && (ANTENNA1==0 || ANTENNA2==0)")
        fl, a1 = q.getcol("FLAG"), q.getcol("ANTENNA1")
        n = fl.shape[1]
        for k in range(len(a1)):                     # YY and the cross hand holding C00's q
            for c in (3, 2 if a1[k] == 0 else 1):
                fl[k, :, c] = True
                fl[k, n // 2, c] = not keep_one
        q.putcol("FLAG", fl)
        q.close()
    with ctable(ms + "/DATA_DESCRIPTION", ack=False) as t:
        spw = int(t.getcol("SPECTRAL_WINDOW_ID")[0])                # (DATA_DESC_ID 0's SPW)
    out = str(tmp_path / "k.h5")
    akcal(vis=ms, caltable=out, jones=["K"], solint=["inf"], refant="C00", field="3C286", parang=False)
    s = [x for x in hdf5.read_term(out, "K0") if int(x.attrs["spw"]) == spw][0]
    idx = [list(truth.ant_names).index(n) for n in s.ant_names]
    pol = s.hand_flags()[:, 0, 0]                                   # (n_ant, 2)
    assert pol[0, 1] and not pol[1:, 1].any()                       # C00's q flagged, the others kept
    err = s.delay[:, 0, 0, 1] - np.asarray(truth.tau)[idx, 1]       # = -tau of the hand's new reference
    spread = np.nanmax(np.abs(err[1:] - np.nanmedian(err[1:])))
    assert spread < 0.02, (spread, err)                            # measured 0.002-0.006 ns


def test_a_hand_left_at_one_frequency_by_another_is_taken_out_too():
    """A third review's case: antenna 2 keeps channel 5 on its baselines, antenna 3 keeps channel 2 on its
    baselines except the one with antenna 2 (channel 5): two frequencies, until antenna 2's samples are
    taken out -- then one.  The test is repeated until nothing changes: both flagged delay_undetermined,
    the others' delays right (the first version tested once: antenna 3 kept, unflagged, 9.6 ns off)."""
    b, truth = make_batch("K", n_cell=1, n_ant=6, n_samp=16, noise=0.0, seed=9)
    w = b.weight[0]
    for k in range(len(b.ant1)):
        pair = {int(b.ant1[k]), int(b.ant2[k])}
        keep = 5 if 2 in pair else 2 if 3 in pair else None
        if keep is not None:                          # hand p (XX) only
            x = w[k, keep, 0]
            w[k, :, 0] = 0.0
            w[k, keep, 0] = x
    res = solve("K", b, "numba", SolveOptions(flag_nonconverged=True, min_bl_per_ant=3))
    pol = res.extra["pol_flags"]
    assert pol[0, [2, 3], 0].all() and not pol[0, [0, 1, 4, 5], 0].any(), pol[0, :, 0]
    assert res.extra["delay_undetermined"][0, [2, 3]].all()
    tau = truth["tau"][0]
    r = int(res.extra["ref_ant_hand"][0, 0])
    ok = ~pol[0, :, 0]
    np.testing.assert_allclose(res.delay[0, ok, 0], (tau[:, 0] - tau[r, 0])[ok], atol=1e-6)


def test_k_on_one_channel_spws_only_is_refused_before_solving(one_channel_ms, tmp_path, monkeypatch):
    """Every selected SPW at one channel (64 continuum SPWs in a review: 33 s of solving, then 'every
    solution is flagged'): refused before anything is read, naming the step and the SPWs; with an SPW of
    two channels the step runs (its one-channel SPWs flagged, above)."""
    from alakazam import unit
    from alakazam.errors import AlakazamError

    ms, _ = one_channel_ms
    read = []
    monkeypatch.setattr(unit, "_solve_field_spw", lambda *a, **k: read.append(1) or [])
    with pytest.raises(AlakazamError, match=r"K0 \(K\): every selected SPW \(1\) has one channel selected"):
        akcal(vis=ms, caltable=str(tmp_path / "k.h5"), jones=["K"], solint=["inf"], refant="C00", spw="1")
    with pytest.raises(AlakazamError, match=r"every selected SPW \(0, 1\) has one channel"):
        akcal(vis=ms, caltable=str(tmp_path / "k.h5"), jones=["G", "K"], solint=["inf", "inf"], refant="C00",
              spw="0:3,1")
    assert not read
