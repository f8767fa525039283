"""Solution time cells of 'int' / 'Nints' have their edges midway between integrations
(``TimeInterval.snap`` = half an integration, config.resolve_integrations; plan.time_cells): TIME off
its grid -- a converter's double Julian Date round trip (~20 us), per-row offsets -- never moves an
integration into the cell before.  With edges on the integrations (floor((t - t0) / solint + 1e-9)),
1 us merged 'int' solutions (a review: 109 cells for 150 integrations; CASA keeps 150).  On an exact
grid the cells are those of the old rule; a duration keeps CASA's edges (multiples of it from the scan
start: no snap, also within 1% of whole integrations, a second review)."""

import numpy as np
import pytest

from alakazam.config import parse_time_interval, resolve_integrations
from alakazam.core.combine import plan_scan_combined
from alakazam.plan import plan_groups, sample_bin_of_rows, time_cells


def _old_cells(dt, seconds):
    return np.floor(np.asarray(dt, float) / seconds + 1e-9)


@pytest.mark.parametrize("text,dt,seconds,snap", [
    ("int", 10.0, 10.0, 5.0), ("3ints", 8.0, 24.0, 4.0), ("60s", 10.0, 60.0, 0.0),
    ("45s", 10.0, 45.0, 0.0), ("10.05s", 10.0, 10.05, 0.0), ("5s", 10.0, 5.0, 0.0), ("inf", 10.0, 0.0, 0.0)])
def test_snap_is_half_an_integration_for_integrations_only(text, dt, seconds, snap):
    t = resolve_integrations(parse_time_interval(text, "time_interval"), dt)
    assert t.seconds == pytest.approx(seconds)
    assert t.snap == snap


@pytest.mark.parametrize("text", ["int", "2ints", "5ints", "20s", "60s", "45s", "33s", "7s", "10.05s"])
def test_exact_grid_cells_unchanged(text):
    dt = 10.0
    t = resolve_integrations(parse_time_interval(text, "time_interval"), dt)
    offs = np.arange(200) * dt
    np.testing.assert_array_equal(time_cells(offs, t), _old_cells(offs, t.seconds))


@pytest.mark.parametrize("text,per", [("int", 1), ("3ints", 3)])
def test_jittered_integrations_stay_in_their_cells(text, per):
    """Every row of integration k (TIME jittered by up to 0.2 integration, per row: with the grid
    anchored at the scan's earliest TIME, up to 0.4 from its place) is in cell k // per, for the rows
    of one scan and for cells across scans (combine='scan')."""
    dt = 8.0
    t = resolve_integrations(parse_time_interval(text, "time_interval"), dt)
    rng = np.random.default_rng(5)
    k = np.repeat(np.arange(60), 10)                    # 60 integrations x 10 baselines
    t0 = 5.0e9
    times = t0 + k * dt + rng.uniform(-0.2, 0.2, len(k)) * dt
    g = plan_groups([(1, times.min(), times.max())], t)[0]
    assert g.n_tcell == -(-60 // per)
    got = sample_bin_of_rows(g, t, {1: times.min()}, np.ones(len(k), int), times)
    np.testing.assert_array_equal(got, k // per)
    # the old rule put rows of integration k in cell k - 1 (the review's merged 'int' solutions)
    assert (_old_cells(times - times.min(), t.seconds) != k // per).any()
    # combine='scan': two scans, cells anchored at the first scan's start
    t2 = times + 60 * dt
    cg = plan_scan_combined([(1, times.min(), times.max()), (2, t2.min(), t2.max())], t)[0]
    bins = cg.sample_bins(np.r_[np.ones(len(k), int), np.full(len(k), 2)], np.r_[times, t2])
    cells = np.asarray(cg.sbin_cell)[bins]
    np.testing.assert_array_equal(cells, np.r_[k, k + 60] // per)


def test_solint_int_on_julian_date_times_one_solution_per_integration(tmp_path):
    """End to end: TIME through a double Julian Date (as UVFITS / FITS-IDI converters write it) plus 1 us
    per integration gives one G solution per integration, the same solutions as the exact grid."""
    from casacore.tables import table

    from alakazam.caltasks import akcal
    from alakazam.io import hdf5
    from alakazam.sim import simulate_ms

    out = {}
    for name in ("exact", "jd"):
        ms = str(tmp_path / f"{name}.ms")
        simulate_ms(ms, feed="linear", n_ant=5, n_chan=(4,), int_s=30.0, scan_len_s=300.0, noise=0.05,
                    seed=7, leakage=False)
        with table(ms, readonly=False, ack=False) as t:
            tm = t.getcol("TIME")
            n_int = len(np.unique(tm[t.getcol("FIELD_ID") == 0]))
            if name == "jd":
                u, inv = np.unique(tm, return_inverse=True)
                tm2 = ((tm / 86400.0 + 2400000.5) - 2400000.5) * 86400.0
                tm2 = tm2 + np.random.default_rng(1).uniform(-1e-6, 1e-6, len(u))[inv]
                assert 0 < np.abs(tm2 - tm).max() < 1e-4
                t.putcol("TIME", tm2)
                t.putcol("TIME_CENTROID", tm2)
        akcal(vis=ms, caltable=ms + ".h5", jones=["G"], solint=["int"], refant="C00", field="0")
        sets = hdf5.read_term(ms + ".h5", "G0")
        out[name] = (n_int, sum(s.jones.shape[2] for s in sets),
                     np.concatenate([s.jones.reshape(-1) for s in sets]))
    for name in out:
        assert out[name][1] == out[name][0], name          # one solution per integration
    np.testing.assert_allclose(out["jd"][2], out["exact"][2], rtol=0, atol=1e-9)


def test_integrations_counted_from_the_scan_times():
    """'Nints' cells hold N integrations counted from each scan's TIMEs (plan.integration_edges), not a
    duration of the MS's median INTERVAL: dumps every 9.5 s with INTERVAL 10 s, dumps of 5 s in a 10-s
    MS, irregular dumps (7-13 s) and TIMEs of one integration a few ms apart all give one cell per
    integration for 'int' (a duration of the median INTERVAL merged or split them: 29 of 30 cells,
    residual 68x the noise, a review; CASA 30)."""
    from alakazam.plan import integration_edges

    rng = np.random.default_rng(3)
    cases = {
        "dumps 9.5 s, INTERVAL 10": (np.arange(30) * 9.5, 10.0),
        "dumps 10 s, INTERVAL 10.5": (np.arange(30) * 10.0, 10.5),
        "dumps of 5 s": (np.arange(30) * 5.0, 5.0),
        "irregular 7-13 s": (np.cumsum(np.r_[0, rng.uniform(7, 13, 29)]), 10.0),
    }
    for name, (t, iv) in cases.items():
        times = np.sort(np.concatenate([t + rng.uniform(-0.003, 0.003, len(t)) for _ in range(5)]))
        edges, n_int = integration_edges(times, np.full(len(times), iv), 1)
        assert n_int == 30 and len(edges) == 29, name
        assert (np.searchsorted(edges, t, side="right") == np.arange(30)).all(), name
        edges3, _ = integration_edges(times, np.full(len(times), iv), 3)
        assert (np.searchsorted(edges3, t, side="right") == np.arange(30) // 3).all(), name
    # INTERVAL 0 (some converters): the scan's own TIME spacing, not the MS's (10 s here: a scan dumped
    # at 5 s had its dumps merged in pairs with the MS-wide spacing, a review); ms-level TIME
    # differences within one integration do not count as spacing
    edges, n_int = integration_edges(np.arange(10) * 8.0, np.zeros(10), 1, fallback_interval=8.0)
    assert n_int == 10
    t5 = np.arange(30) * 5.0
    times = np.sort(np.concatenate([t5 + rng.uniform(-0.003, 0.003, 30) for _ in range(4)]))
    edges, n_int = integration_edges(times, np.zeros(len(times)), 1, fallback_interval=10.0)
    assert n_int == 30 and (np.searchsorted(edges, t5, side="right") == np.arange(30)).all()


def test_solint_int_with_interval_not_the_dump_spacing(tmp_path):
    """End to end: an MS whose INTERVAL says 36 s for dumps 30 s apart gives one G solution per
    integration with 'int' (as CASA's gaincal; a duration of INTERVAL merged every fourth pair)."""
    from casacore.tables import table

    from alakazam.caltasks import akcal
    from alakazam.io import hdf5
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "iv.ms")
    simulate_ms(ms, feed="linear", n_ant=5, n_chan=(4,), int_s=30.0, scan_len_s=300.0, noise=0.05, seed=8,
                leakage=False)
    with table(ms, readonly=False, ack=False) as t:
        t.putcol("INTERVAL", t.getcol("INTERVAL") * 1.2)
        q = t.query("FIELD_ID==0")
        n_int = len(np.unique(q.getcol("TIME")))
        q.close()
    akcal(vis=ms, caltable=ms + ".h5", jones=["G"], solint=["int"], refant="C00", field="0")
    n_sol = sum(s.jones.shape[2] for s in hdf5.read_term(ms + ".h5", "G0"))
    assert n_sol == n_int
