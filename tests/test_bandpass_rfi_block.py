"""A band-edge RFI block whose channels are mostly flagged, with a few channels that keep strongly
corrupted data (a review: MeerKAT-like MS, 60 antennas, 4096 channels, persistent RFI in channels 0-99;
after akflag mad, channels 66 and 75 kept 116/120 and 118/120 unflagged bandpass hands 0.46 in amplitude
and 1.5 rad in phase off the truth at chi2 / nDOF ~5200 against a band median of 1.05).

The neighbour-relative chi2 rules (solvers/quality.chi2_outlier_bins, local_excess) took their
reference from the running median of the adjacent bins' chi2 / nDOF, flagged solutions included: the
RFI channels beside the survivors, whose solutions were flagged (there: nonconverged; here: amplitude
undetermined) but whose chi2 / nDOF was just as high, made the survivors look ordinary.  The reference
is now taken from the nearest bins with usable (unflagged) solutions."""

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akcal
from alakazam.io import hdf5
from alakazam.sim import simulate_ms
from alakazam.sim.simulate import load_truth
from alakazam.solvers import quality

N_ANT = 10
N_CHAN = 40
RFI = list(range(12))            # the band-edge RFI block
SURVIVORS = [5, 9]               # RFI channels left with all their data (the rest: flagged down)


@pytest.fixture(scope="module")
def rfi_block_ms(tmp_path_factory):
    """10 antennas, 40 channels, bandpass only, persistent RFI (2-6 x 3C286's flux, random phase per
    baseline and correlation) in channels 0-11.  In the RFI channels other than 5 and 9 only the
    baselines between antennas 0-4 and 5-9 keep data: every antenna has 5 baselines (minblperant 4
    passes) but the baselines form no odd cycle, so the amplitudes are undetermined and every solution
    of those channels is flagged, while their chi2 / nDOF (a fit to the RFI) is as high as the
    survivors'."""
    d = tmp_path_factory.mktemp("bp_rfi_block")
    ms = str(d / "rfi_block.ms")
    simulate_ms(ms, n_ant=N_ANT, n_ant_extra=0, n_chan=(N_CHAN,), feed="linear", duration_h=0.5,
                int_s=60.0, scan_len_s=600.0, noise=2.0, seed=5, delays=False, bandpass=True,
                time_gains=False, leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0,
                rfi_persistent={0: RFI})
    with table(ms, readonly=False, ack=False) as t:
        a1, a2, fl = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("FLAG")
        same_side = (a1 < N_ANT // 2) == (a2 < N_ANT // 2)
        for c in RFI:
            if c not in SURVIVORS:
                fl[same_side, c, :] = True
        t.putcol("FLAG", fl)
    return ms


def _bandpass(ms, out, **kw):
    akcal(vis=ms, caltable=out, field="3C286", jones=["G"], solint=["inf"], freqint=["1ch"], refant="C00",
          parang=True, **kw)
    return hdf5.read_term(out, "G0")[0]


@pytest.mark.parametrize("rfi_threshold", [5.0, 0.0])
def test_rfi_survivors_in_a_flagged_block_are_flagged(rfi_block_ms, tmp_path, rfi_threshold):
    """Before, with the sample flags off: channels 5 and 9 kept all 20 hands unflagged, amplitudes up to
    tens of sigma off the truth (chi2 / nDOF 821 and 339, the flagged RFI channels' 190-900, the clean
    channels' ~1); with the sample flags on (rfi_threshold 5), which removed every sample of the other
    RFI channels, channel 9 (chi2 / nDOF 205) kept its 20 hands: beside it only one bin had a chi2, too
    few for a running median.  The clean channels stay unflagged and every unflagged hand is within 5
    sigma of the truth (its stored SNR)."""
    ms = rfi_block_ms
    s = _bandpass(ms, str(tmp_path / "bp.h5"), rfi_threshold=rfi_threshold)
    ok = ~s.hand_flags()[:, :, 0]                                 # (ant, chan, hand)
    clean = [c for c in range(N_CHAN) if c not in RFI]
    rchi2 = s.extra["rchi2"][:, 0]
    assert not ok[:, [c for c in RFI if c not in SURVIVORS]].any()
    if rfi_threshold == 0:
        # the setup: the flagged RFI channels' chi2 / nDOF is as high as the survivors' (a fit to RFI)
        high = 50 * np.nanmedian(rchi2[clean])
        assert np.all(rchi2[RFI] > high), rchi2[RFI]
    # the survivors' solutions are flagged, every clean channel's kept
    assert not ok[:, SURVIVORS].any(), ok[:, SURVIVORS].sum(axis=(0, 2))
    assert ok[:, clean].all(), np.argwhere(~ok[:, clean])
    # what is kept is within its noise of the truth (amplitude against its own stored SNR)
    tr = load_truth(ms)
    idx = [tr.ant_names.index(n) for n in s.ant_names]
    truth = np.abs(tr.bandpass[0][idx])                            # (ant, chan, 2)
    g = np.abs(np.stack([s.jones[:, :, 0, 0, 0], s.jones[:, :, 0, 1, 1]], -1))
    z = np.abs(g - truth) / (g / (np.sqrt(2) * s.extra["snr"][:, :, 0]))
    assert z[ok].max() < 5, np.sort(z[ok])[-4:]


def test_chi2_outlier_reference_skips_flagged_bins():
    """The rule itself: a bin at 5000 among flagged bins at 5000-7000 (a band-edge RFI block) and clean
    bins at ~1 is an outlier against its nearest usable bins; without the usable mask (every bin with a
    chi2 counts) it is not.  With every bin usable the reference of an interior bin is the running
    median of the 7 bins around it, as before."""
    r = np.ones((40, 1))
    r[:12, 0] = np.linspace(5000.0, 7000.0, 12)
    usable = np.ones(r.shape, bool)
    usable[:12] = False
    usable[[5, 9]] = True
    bad = quality.chi2_outlier_bins(r, usable) & usable          # (the flagged bins stay flagged)
    assert bad[[5, 9], 0].all() and np.count_nonzero(bad) == 2
    assert not quality.chi2_outlier_bins(r).any()
    e = quality.local_excess(r, usable=usable)
    assert e[5, 0] > 1000 and e[9, 0] > 1000 and np.all(e[12:] == 1.0)
    assert np.all(quality.local_excess(r)[[5, 9]] == 1.0)
    # all usable: interior bins as the plain running median
    x = np.random.default_rng(0).uniform(0.5, 1.5, (30, 3))
    inner = slice(3, 27)
    np.testing.assert_array_equal(quality.neighbour_median(x, np.ones(x.shape, bool))[inner],
                                  quality._running_nanmedian(x.T).T[inner])


def test_a_steep_band_edge_beside_a_flagged_block_is_no_outlier():
    """A bin's reference takes HALF_WINDOW usable bins from each side where the band has them (a
    review of the first version of this rule, which took the six nearest by distance): a steep filter
    edge (attenuation 0.05 up to channel 19, then 0.12, 0.25, 0.45, 0.7, 1; chi2 / nDOF with per-row
    weights scales as its square) beside a flagged block (channels 23-40) took all six from the edge's
    low side, and the clean channels 20-22 came out 6-81x their reference (21 and 22 flagged; on the
    review's MS 20-22 flagged at 28-79x)."""
    from alakazam.solvers import quality

    att = np.r_[np.full(20, 0.05), [0.12, 0.25, 0.45, 0.7], np.ones(40)]
    r = (att ** 2)[:, None]
    usable = np.ones_like(r, bool)
    usable[23:41] = False
    ref = quality.neighbour_median(r, usable)
    bad = quality.chi2_outlier_bins(r, usable)
    assert not bad[:23].any() and not bad[41:].any(), np.flatnonzero(bad)
    assert np.nanmax(r[:23, 0] / ref[:23, 0]) < 4, r[:23, 0] / ref[:23, 0]
