"""minblperant counts the baselines with unflagged data, as CASA's (solvers/common.run): on an array of
five antennas, one antenna whose data are noise only (flags not marking it, ``rfi_threshold=0``) is
taken out of its cell for no signal (solvers/nosignal.py); the re-solve does not count minblperant again
without it.  Before (review 56c), the four others were left three baselines each, minblperant 4 flagged
them, and the whole scan was lost (scipy's K per scan; numba's K per integration lost 30%), where CASA
keeps them; with the dead antenna the reference, scipy lost the scan at every solint.  The others'
solutions are those of a solve with the dead antenna's rows flagged and minblperant 3, within their
thermal error."""

import os
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akcal
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

SCAN = 4


@pytest.fixture(scope="module", params=["C03", "C00"], ids=["dead-C03", "dead-refant"])
def five(request, tmp_path_factory):
    """(MS of five antennas with one antenna's DATA noise only in scan SCAN, the same with those rows
    flagged, that antenna).  C00 is the reference: the cell takes the next (solvers/nosignal.py)."""
    dead_name = request.param
    d = tmp_path_factory.mktemp("five")
    ms = str(d / "dead5.ms")
    simulate_ms(ms, n_ant=5, n_chan=(32,), feed="linear", duration_h=1.0,
                dead_antenna_scan=(dead_name, SCAN))
    flagged = str(d / "flagged.ms")
    shutil.copytree(ms, flagged)
    with table(flagged, readonly=False, ack=False) as t:
        names = list(table(os.path.join(flagged, "ANTENNA"), ack=False).getcol("NAME"))
        a = names.index(dead_name)
        rows = np.flatnonzero(((t.getcol("ANTENNA1") == a) | (t.getcol("ANTENNA2") == a))
                              & (t.getcol("SCAN_NUMBER") == SCAN))
        f = t.getcol("FLAG")
        f[rows] = True
        t.putcol("FLAG", f)
    return ms, flagged, dead_name


def _solve(ms, cal, jones, solint, backend, minblperant=4, refant="C00", rfi_threshold=0.0):
    if os.path.exists(cal):
        os.remove(cal)
    akcal(vis=ms, caltable=cal, field="3C286", refant=refant, jones=[jones], solint=[solint], parang=True,
          rfi_threshold=rfi_threshold, solver=backend, minblperant=minblperant)
    return [s for s in hdf5.read_term(cal, jones + "0") if s.scan_id == SCAN]


CASES = [("K", "scan", "numba"), ("K", "int", "numba"), ("G", "int", "numba"), ("G", "scan", "numba"),
         ("K", "scan", "scipy"), ("K", "int", "scipy"), ("K", "scan", "ceres"), ("K", "scan", "jax")]


@pytest.mark.parametrize("jones,solint,backend", CASES, ids=["-".join(c) for c in CASES])
def test_one_dead_antenna_of_five_leaves_the_others_solved(five, tmp_path, jones, solint, backend):
    pytest.importorskip({"numba": "numba", "scipy": "scipy", "ceres": "pyceres", "jax": "jax"}[backend])
    ms, flagged, dead_name = five
    got = _solve(ms, str(tmp_path / "a.h5"), jones, solint, backend)
    ref = _solve(flagged, str(tmp_path / "f.h5"), jones, solint, backend)
    names = list(got[0].attrs["ant_names"])
    dead = names.index(dead_name)
    with table(os.path.join(ms, "SPECTRAL_WINDOW"), ack=False) as t:
        nu = t.getcol("CHAN_FREQ")[0]
    live = np.arange(len(names)) != dead
    for g, r in zip(got, ref):
        fl = g.flags.reshape(len(names), -1)
        assert fl[dead].all(), "the noise-only antenna is flagged"
        assert not fl[live].any(), f"live antennas flagged: {fl[live].mean(1)}"
        np.testing.assert_array_equal(g.flags, r.flags)
        # within the thermal error of the solve with the rows flagged (equal where the rule took the dead
        # antenna out: the same samples; where its cell converged with it in and its SNR flagged it, its
        # noise baselines are in the fit, as in CASA): sigma_tau = 1 / (2 pi sigma_nu SNR), sigma_g =
        # |g| / SNR (SNR = 1 / rms phase error; the reference's 0 taken as the cell's median)
        snr = np.where(r.extra["snr"] > 0, r.extra["snr"], np.median(r.extra["snr"][live]))[live]
        if jones == "K":
            sig = 1e9 / (2 * np.pi * nu.std() * snr)
            assert (np.abs(g.delay[live] - r.delay[live]) <= 5 * sig).all()
        else:
            gg = np.stack([g.jones[live][..., 0, 0], g.jones[live][..., 1, 1]], -1)
            rr = np.stack([r.jones[live][..., 0, 0], r.jones[live][..., 1, 1]], -1)
            assert (np.abs(gg - rr) <= 5 * np.abs(rr) / snr).all()


@pytest.mark.parametrize("jones,solint", [("K", "scan"), ("G", "int"), ("G", "scan")])
def test_default_solve_time_flags_leave_the_others_solved(five, tmp_path, jones, solint):
    """With the default solve-time flags the dead antenna's baselines are flagged before the solve (no
    signal); the four others, three baselines each, are solved: minblperant asks at most the cell's
    other antennas with data (solvers/quality.py).  Before (review 57d F3), minblperant 4 flagged them
    and the step failed ("every solution is flagged ... check FLAG"), where CASA keeps them; the same
    as the solve with the rows flagged."""
    ms, flagged, dead_name = five
    got = _solve(ms, str(tmp_path / "d.h5"), jones, solint, "numba", rfi_threshold=5.0)
    ref = _solve(flagged, str(tmp_path / "f.h5"), jones, solint, "numba", rfi_threshold=5.0)
    names = list(got[0].attrs["ant_names"])
    live = np.arange(len(names)) != names.index(dead_name)
    for g, r in zip(got, ref):
        fl = g.flags.reshape(len(names), -1)
        assert fl[~live].all() and not fl[live].any(), fl.mean(1)
        np.testing.assert_array_equal(g.flags, r.flags)


def test_minblperant_counts_the_antennas_with_data(five, tmp_path):
    """Rows flagged: the four antennas with data need 3 baselines (n - 1), so minblperant 4 keeps them;
    with one more baseline flagged between two of them, those two have 2 and are removed, and the rounds
    do not lower the requirement again for the two left on one baseline: the cell is flagged whole."""
    _, flagged, dead_name = five
    got = _solve(flagged, str(tmp_path / "f4.h5"), "K", "scan", "numba", minblperant=4)
    names = list(got[0].attrs["ant_names"])
    live = np.arange(len(names)) != names.index(dead_name)
    assert not got[0].flags.reshape(len(names), -1)[live].any()
    sparse = str(tmp_path / "sparse.ms")
    shutil.copytree(flagged, sparse)
    a, b = [x for x in names if x not in (dead_name, "C00")][:2]      # two live antennas, not the refant
    with table(sparse, readonly=False, ack=False) as t:
        an = list(table(os.path.join(sparse, "ANTENNA"), ack=False).getcol("NAME"))
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        ia, ib = an.index(a), an.index(b)
        pair = ((a1 == ia) & (a2 == ib)) | ((a1 == ib) & (a2 == ia))
        rows = np.flatnonzero(pair & (t.getcol("SCAN_NUMBER") == SCAN))
        f = t.getcol("FLAG")
        f[rows] = True
        t.putcol("FLAG", f)
    got = _solve(sparse, str(tmp_path / "s4.h5"), "K", "scan", "numba", minblperant=4)
    assert got[0].flags.all()
    got = _solve(sparse, str(tmp_path / "s2.h5"), "K", "scan", "numba", minblperant=2)
    assert not got[0].flags.reshape(len(names), -1)[live].any()
