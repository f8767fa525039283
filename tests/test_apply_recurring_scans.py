"""akapply on an MS whose SCAN_NUMBERs restart per observation (core/scanobs.py, review 60a).

The own-scan rule (a field's data keep their scan's own solutions where the interpolation over all
solutions reaches a flagged one of another scan) matched solutions to the data by scan number, so on
an MS with two observations numbered 1-6 each, the data of observation 1's scan 1 were interpolated
between the two 'scan 1' solutions an hour apart, across a flagged solution (4.9 Jy on |V| ~ 15 in
the review, silently; CASA flags them).  Such scans now take no own-scan fallback: interpolated over
all the field's solutions, flags not bridged, as CASA's applycal.
"""

import shutil

import numpy as np
import pytest

from alakazam.sim import simulate_ms


def _two_observations(src, dst):
    """``dst``: ``src`` with scans 7-12 renumbered 1-6 in a second observation (OBSERVATION_ID 1)."""
    from casacore.tables import table

    shutil.copytree(src, dst)
    with table(dst, readonly=False, ack=False) as t:
        sc, ob = t.getcol("SCAN_NUMBER"), t.getcol("OBSERVATION_ID")
        later = sc >= 7
        sc[later] -= 6
        ob[later] = 1
        t.putcol("SCAN_NUMBER", sc)
        t.putcol("OBSERVATION_ID", ob)
    with table(dst + "/OBSERVATION", readonly=False, ack=False) as o:
        o.addrows(1)
        for c in ("TELESCOPE_NAME", "TIME_RANGE", "OBSERVER", "PROJECT", "RELEASE_DATE", "FLAG_ROW"):
            o.putcell(c, 1, o.getcell(c, 0))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A per-scan G on 3C286 (scans 1, 4, 7, 10) with C02 flagged in scan 4, solved on the MS numbered
    1-12 and exported to a CASA table; and that table with its scans numbered as the two-observation MS
    numbers them (7-12 -> 1-6, OBSERVATION_ID 1), as CASA's gaincal writes it there."""
    from casacore.tables import table

    from alakazam.caltasks import akcal, akexport
    from alakazam.io import hdf5

    d = tmp_path_factory.mktemp("recur")
    ref = str(d / "one.ms")
    simulate_ms(ref, n_ant=6, n_ant_extra=0, n_chan=(8,), duration_h=2.0, noise=0.01, seed=1,
                leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0)
    two = str(d / "two.ms")
    _two_observations(ref, two)
    h5 = str(d / "g.h5")
    akcal(vis=ref, caltable=h5, field="3C286", jones=["G"], solint=["scan"], refant="C00")
    sets = hdf5.read_term(h5, "G0")
    for s in sets:
        if s.scan_id == 4:
            s.flags[s.ant_names.index("C02")] = True
    hdf5.write_file(h5, {"G0": sets})
    tab = str(d / "g.tb")
    akexport(caltable=h5, jones="G0", casatable=tab)
    tab2 = str(d / "g_two.tb")
    shutil.copytree(tab, tab2)
    with table(tab2, readonly=False, ack=False) as t:
        sc, ob = t.getcol("SCAN_NUMBER"), t.getcol("OBSERVATION_ID")
        ob[sc >= 7] = 1
        sc[sc >= 7] -= 6
        t.putcol("SCAN_NUMBER", sc)
        t.putcol("OBSERVATION_ID", ob)
    return d, ref, two, tab, tab2


def test_recurring_scan_numbers_take_no_other_observation_solutions(case):
    from casacore.tables import table

    from alakazam.caltasks import akapply

    d, ref, two, tab, tab2 = case
    got = {}
    for name, ms, t in (("one", ref, tab), ("two", two, tab2)):
        work = str(d / f"ap_{name}.ms")
        shutil.copytree(ms, work)
        akapply(vis=work, field="3C286", gaintable=[t], jones=["G0"], interp=["linear"], applymode="calflag")
        with table(work, ack=False) as tb:
            q = tb.query("FIELD_ID==0")
            c02 = list(table(work + "/ANTENNA", ack=False).getcol("NAME")).index("C02")
            got[name] = (q.getcol("CORRECTED_DATA"), q.getcol("FLAG"), q.getcol("TIME"),
                         (q.getcol("ANTENNA1") == c02) | (q.getcol("ANTENNA2") == c02))
    (d1, f1, tm, on), (d2, f2, _, _) = got["one"], got["two"]
    later = tm - tm.min() >= 3600                   # the second observation's first 3C286 scan and on
    scan1 = on & later & (tm - tm.min() < 4200)
    assert scan1.any()
    # never corrected with other values than the correctly numbered MS's: the same, or flagged (CASA)
    ok = ~f2.any(axis=(1, 2)) & ~f1.any(axis=(1, 2))
    assert np.abs(d2[ok] - d1[ok]).max() < 1e-5
    assert f2[scan1].any(axis=(1, 2)).any()         # what crossed the hour before is flagged now
    assert (f2 | ~f1).all()                         # nothing the correct numbering flags is left unflagged
