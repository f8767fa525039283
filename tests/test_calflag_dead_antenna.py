"""calflag does not bridge a dead antenna's flagged calibrator solutions into the target (review of
2026-12-01, a uGMRT user with messy data).

uGMRT-like Measurement Sets: circular feeds, only RR and LL (``hazards.parallel_hands_only``), hazards
injected into DATA / FLAG with python-casacore after ``alakazam simulate``.  The full chain that found
these (24 antennas, 128 channels, 2 h; persistent strong and weak RFI, bursts, an antenna dead for
the second half, the reference antenna flagged in one 3C147 scan, band edges at 0.1 gain, NaN and zero
rows, one antenna with 5x the noise; akflag clip + tfcrop, then K / G(p, int) / bandpass on 3C286,
G(ap) on 3C286 + 3C147 with K and the bandpass pre-applied, fluxscale, apply) is described in the
report of branch review-gmrt; each test below is a minimal reproduction of one defect it showed.
"""

import os
import sys

import numpy as np
from casacore.tables import table

from alakazam.caltasks import akapply, akcal
from alakazam.io import hdf5

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hazards import rr_ll_ms as _rr_ll_ms  # noqa: E402  (tests/hazards.py)

NOISE = 0.1




# ---------------------------------------------------------------------------------------------------
# 2. apply bridges a dead antenna's flagged calibrator solutions across scans (CASA flags)
# ---------------------------------------------------------------------------------------------------

def test_calflag_does_not_bridge_flagged_calibrator_solutions_into_the_target(tmp_path):
    """An antenna dies half-way (its DATA noise only, FLAG False -- uGMRT antennas do drop out).
    Its G solutions on 3C286 and 3C147 after that are correctly flagged (SNR ~0), so the target scans
    between and after those calibrator scans have no valid solution for it on either side.  akapply
    with applymode 'calflag' (and 'calflagstrict') corrects its target data with the last valid
    solution from before it died (40-70 min away: 'the nearest valid solution', docs/conventions.md)
    and leaves them unflagged: noise-only visibilities stay in the target.

    Measured at e098209 on the 24-antenna chain (C08 dead from 60 min): C08's target rows in scans
    9 and 12 flagged 0.093 / 0.100 (only the tfcrop flags) with calflag and with calflagstrict; CASA
    6.7 applycal (interp 'linear', calflag) of the same G0 exported with akexport flags them 1.000 /
    1.000.  Consequence: TARGET scan 9 Re(corrected) mean 0.641 Jy instead of 0.697 (true 0.7; the
    baselines without C08 give 0.997 x true).  On this test's MS: akapply calflag leaves C04's TARGET
    rows of scans 9 / 12 flagged 0.0 / 0.029; CASA 6.7 applycal of the akexport'ed G0 (interp
    'linear', calflag) flags them 1.000 / 1.000 (and scan 6, next to the first flagged scan, too)."""
    ms, tr = _rr_ll_ms(tmp_path, "dead", duration_h=2.0, n_chan=(16,), bandpass=False)
    dead = "C04"
    with table(ms + "::ANTENNA", ack=False) as a:
        di = list(a.getcol("NAME")).index(dead)
    rng = np.random.default_rng(3)
    with table(ms, readonly=False, ack=False) as t:
        d = t.getcol("DATA")
        sc = t.getcol("SCAN_NUMBER")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        sel = ((a1 == di) | (a2 == di)) & (sc >= 7)
        d[sel] = NOISE * (rng.normal(size=d[sel].shape) + 1j * rng.normal(size=d[sel].shape))
        t.putcol("DATA", d.astype(np.complex64))
    cal = str(tmp_path / "g.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", refant="C00", jones=["G"], solint=["int"])
    for s in hdf5.read_term(cal, "G0"):                              # precondition: the solve is right
        i = list(s.attrs["ant_names"]).index(dead)
        if s.scan_id >= 7:
            assert s.hand_flags()[i].all(), (s.scan_id, "dead antenna's solutions not flagged")
    akapply(vis=ms, field="TARGET", gaintable=[cal], jones=["G0"], interp=["linear"], applymode="calflag")
    with table(ms, ack=False) as t:
        f = t.getcol("FLAG")
        sc = t.getcol("SCAN_NUMBER")
        fld = t.getcol("FIELD_ID")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    out = {}
    for scan in (9, 12):                  # TARGET scans: 8 (3C147) and 10 (3C286) flagged / after 11
        rows = (sc == scan) & (fld == 2) & ((a1 == di) | (a2 == di))
        assert rows.any()
        out[scan] = float(f[rows].mean())
    assert min(out.values()) == 1.0, f"dead antenna's TARGET data left unflagged by calflag: {out}"
