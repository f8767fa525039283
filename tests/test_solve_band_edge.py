"""A rolled-off band edge is not RFI: the solve-time per-row MAD across channels is one-sided
(core/rfi._mad_flag_rows), as the persistent-channel test already was (core/cellflags.py 2.).

Found by the review of 2026-12-01 (a uGMRT user with messy data: 24 antennas, 128 channels, RR/LL
only, band edges at 0.1 gain: 24 of 128 channels, 19% of the band, lost as "cells without any usable
data").  A rolled-off edge and channels slightly below a flat top must be solved, as CASA's bandpass
solves them; RFI, which adds power, must still be flagged.
"""

import os
import sys

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akcal
from alakazam.io import hdf5

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hazards import rr_ll_ms as _rr_ll_ms  # noqa: E402  (tests/hazards.py)

NOISE = 0.1




# ---------------------------------------------------------------------------------------------------
# 1. the solve-time per-row MAD flags a rolled-off band edge as RFI
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("edge_gain", [0.5, 0.3])
def test_solve_rfi_statistics_keep_a_rolled_off_band_edge(tmp_path, edge_gain):
    """A band edge rolls off (the first and last 6 of 64 channels at antenna gain ``edge_gain``: the
    visibilities x 0.25 / x 0.09, i.e. 37 / 13 sigma per sample on 3C286 at noise 0.1 Jy).  With the
    default rfi_threshold=5 every edge-channel bandpass solution is flagged: the per-row MAD across
    channels (core/rfi._mad_row, two-sided on |V|/|M|) takes the lower bandpass level for an outlier,
    and the extension flags the channels whole -- although cellflags' own docstring says the channel
    statistics are one-sided so that "a band edge that rolls off is kept".  With rfi_threshold=0 the
    same channels are solved to 1.1% (gain 0.5) / 0.9% (gain 0.3) rms of the truth.  The log only says
    "cells without any usable data".

    Measured at e098209: edge solutions flagged 1.00 (gain 0.5 and 0.3), 0.00 at gain 0.7; on the
    24-antenna 128-channel chain with edges at gain 0.1 (1.5 sigma per sample, ~45 sigma per antenna
    and channel over the run) 24 of 128 channels (19% of the band) lost; on synthetic rows with a
    flat bandpass and a smooth logistic roll-off (flag_chunk directly) channels with 0.95 of the
    peak gain (SNR 135 per sample) were flagged: 36 of 128.  CASA 6.7 gaincal (calmode p, int) +
    bandpass (inf, combine scan) on this MS at gain 0.5 flags the edge channels exactly as often as
    the inner ones (0.200 = the two ANTENNA rows without data): it solves them."""
    ms, tr = _rr_ll_ms(tmp_path, f"edge{edge_gain}")
    gain = np.ones(64)
    gain[:6] = edge_gain
    gain[-6:] = edge_gain
    with table(ms, readonly=False, ack=False) as t:
        t.putcol("DATA", (t.getcol("DATA") * (gain ** 2)[None, :, None]).astype(np.complex64))
    edge = np.r_[0:6, 58:64]
    res = {}
    for thr in (5.0, 0.0):
        cal = str(tmp_path / f"bp{thr:g}.h5")
        akcal(vis=ms, caltable=cal, field="3C286", refant="C00", jones=["G", "G"], solint=["int", "inf"],
              freqint=["full", "1MHz"], calmode=["p", "ap"], rfi_threshold=thr)
        s = hdf5.read_term(cal, "G1")[0]
        hf = s.hand_flags()[:, :, 0]                                 # (ant, chan, hand)
        b = np.stack([s.jones[:, :, 0, 0, 0], s.jones[:, :, 0, 1, 1]], -1)
        r = b / (tr.bandpass[0] * gain[None, :, None])
        r = r / np.nanmedian(np.where(hf, np.nan, r)[:, 10:54], axis=1, keepdims=True)
        r = r * np.exp(-1j * np.angle(r[:1]))
        err = np.abs(np.where(hf, np.nan, r) - 1)[:, edge]
        res[thr] = (hf[:, edge].mean(), np.sqrt(np.nanmean(err ** 2)) if (~hf[:, edge]).any() else np.nan)
    # the channels are solvable: without the statistics they are within a few % of the truth
    assert res[0.0][0] == 0.0 and res[0.0][1] < 0.03, res
    # ... and the default must not throw them away as RFI
    assert res[5.0][0] < 0.1, f"edge-channel solutions flagged with the default rfi_threshold: {res}"
