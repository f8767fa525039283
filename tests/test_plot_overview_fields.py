"""akplot's overview of a gain solved on two calibrators observed in turn (review 58b): each field's
solutions were drawn in the same colours, so the two lines of a hand read as one zig-zag joining the
fields, and the flagged solutions (stored as NaN) were drawn at 0, squashing every amplitude panel
with a flagged cell into a strip near its top.  Now each (field, SPW) has its own colours, marker and
labels, a line never holds two fields' solutions, and no flagged solution is drawn at 0: the panel's
y range is that of its valid values."""

import numpy as np

from alakazam import plots
from alakazam.io import hdf5
from alakazam.io.hdf5 import SolutionSet

NAMES = ["C00", "C01", "C02", "C03"]
FIELDS = ("3C286", "3C147")
N_T = 2                                  # solutions per scan


def _scan_set(scan):
    """Field FIELDS[(scan - 1) % 2]'s G of scan ``scan`` (scans alternate between the fields), one
    frequency bin, amplitudes near 1; C01's first solution flagged and NaN (as alakazam writes a flagged
    solution), C02's first solution of scan 3 flagged at a finite outlier value (a CASA table's)."""
    field = FIELDS[(scan - 1) % 2]
    n = len(NAMES)
    rng = np.random.default_rng(scan)
    j = np.zeros((n, 1, N_T, 2, 2), complex)
    for h in (0, 1):
        j[..., h, h] = (1 + 0.05 * rng.normal(size=(n, 1, N_T))) * np.exp(0.3j * rng.normal(size=(n, 1, N_T)))
    flags = np.zeros((n, 1, N_T), bool)
    flags[1, 0, 0] = True
    j[1, 0, 0] = np.nan
    if scan == 3:
        flags[2, 0, 0] = True
        j[2, 0, 0, 0, 0] = j[2, 0, 0, 1, 1] = 40.0
    return SolutionSet(
        jones=j, flags=flags, time=5e9 + 600.0 * scan + 120.0 * np.arange(N_T), freq=np.array([1.4e9]),
        delay=None, converged=np.ones((1, N_T), bool), n_iter=np.full((1, N_T), 7), cost=np.ones((1, N_T)),
        attrs=dict(jones_type="G", field_name=field, scan_id=scan, spw=0, n_ant=n, field_ra=1.0,
                   field_dec=0.5, matrix_form="diagonal", ref_ant=0, ref_ant_name="C00", ant_names=NAMES,
                   solint_s=120.0, freqint_hz=1e6, phase_only=False, feed_basis="circular",
                   solver_backend="numba", apply_parang=False, ms="x.ms", preapply_chain=[]))


def _overview(tmp_path):
    p = str(tmp_path / "g.h5")
    hdf5.write_terms(p, {"G0": [_scan_set(sc) for sc in range(1, 7)]})
    series = plots.load_series(hdf5.read_term(p, "G0"), "G0")
    assert {s.field for s in series} == set(FIELDS)
    fig = plots.grid_figure(series, None, 0.0, "G0")
    panels = {ax.get_title().split(" (")[0]: ax for ax in fig.axes if ax.get_visible()}
    times = {s.field: set(np.round(s.time / 3600.0, 9)) for s in series}
    return panels, times


def _valid_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_label() != plots.FLAG_LABEL]


def test_each_field_is_a_line_of_its_own_style(tmp_path):
    panels, times = _overview(tmp_path)
    for name, ax in panels.items():
        style = {}
        for ln in _valid_lines(ax):
            x = np.asarray(ln.get_xdata(), float)
            y = np.asarray(ln.get_ydata(), float)
            xs = set(np.round(x[np.isfinite(y)], 9))
            owner = [f for f in FIELDS if xs <= times[f]]
            assert len(owner) == 1, (name, "a line joins the fields' solutions")
            style.setdefault((ln.get_color(), ln.get_marker()), set()).add(owner[0])
        # the two fields never share a (colour, marker): told apart as plotms colours by field
        assert all(len(f) == 1 for f in style.values()), (name, style)
        assert {f for fs in style.values() for f in fs} == set(FIELDS)
    labels = {ln.get_label() for ln in panels["C00"].get_lines() if not ln.get_label().startswith("_")}
    assert {"R 3C286", "L 3C286", "R 3C147", "L 3C147"} <= labels, labels


def test_no_flagged_solution_is_drawn_at_zero(tmp_path):
    panels, _ = _overview(tmp_path)
    for name, ax in panels.items():
        valid = np.concatenate([np.asarray(ln.get_ydata(), float) for ln in _valid_lines(ax)])
        valid = valid[np.isfinite(valid)]
        lo, hi = ax.get_ylim()
        # the axis spans the valid amplitudes (near 1), not 0 or the flagged outlier 40
        assert lo > 0.5 and hi < 2.0 and lo <= valid.min() and hi >= valid.max(), (name, lo, hi)
        for ln in ax.get_lines():
            if ln.get_label() == plots.FLAG_LABEL:
                y = np.asarray(ln.get_ydata(), float)
                assert not np.any(y == 0.0), (name, y)
    # C01's flagged NaN solutions (one per scan, both hands; each field's crosses a line of their own)
    # are still drawn, inside the axis
    fl = [ln for ln in panels["C01"].get_lines() if ln.get_label() == plots.FLAG_LABEL]
    y = np.concatenate([np.asarray(ln.get_ydata(), float) for ln in fl])
    lo, hi = panels["C01"].get_ylim()
    assert len(y) == 2 * 6 and np.all((y > lo) & (y < hi)), (y, lo, hi)
    # C02's flagged finite outlier is kept at its stored value (beyond the valid range)
    fl = [ln for ln in panels["C02"].get_lines() if ln.get_label() == plots.FLAG_LABEL]
    assert sorted(np.concatenate([np.asarray(ln.get_ydata(), float) for ln in fl])) == [40.0, 40.0]
