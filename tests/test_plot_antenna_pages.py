"""akplot iteraxis='antenna' (the default): one page per (field, antenna) with every selected SPW of
the field on it, as plotms -- not one page per (field, SPW, antenna), which on 32 SPWs x 27 antennas was
2,600 PNGs per field and key.  Written tables (no MS): a bandpass G0 (freq kind), a K0 (delay kind) and
a time G1, 3 SPWs on 2 fields, C03 missing from SPW 1."""

import os

import numpy as np
import pytest

from alakazam import plots
from alakazam.io import hdf5
from alakazam.io.hdf5 import SolutionSet

NAMES = ["C00", "C01", "C02", "C03"]
FIELDS = ("3C286", "J1331")
SPWS = (0, 1, 2)
MISSING = ("C03", 1)                 # (antenna, SPW): not in that SPW's solutions
N_F = {"G0": 8, "K0": 1, "G1": 1}
N_T = {"G0": 1, "K0": 2, "G1": 3}
JT = {"G0": "G", "K0": "K", "G1": "G"}
KIND = {"G0": "freq", "K0": "delay", "G1": "time"}


def _freq(spw, n_f):
    return 1.0e9 + spw * 0.2e9 + np.arange(n_f) * 4e6


def _set(key, field, spw):
    names = [a for a in NAMES if (a, spw) != MISSING]
    n, n_f, n_t = len(names), N_F[key], N_T[key]
    rng = np.random.default_rng(spw + 10 * FIELDS.index(field))
    j = np.zeros((n, n_f, n_t, 2, 2), complex)
    j[..., 0, 0] = (1 + 0.1 * rng.normal(size=(n, n_f, n_t))) * np.exp(1j * rng.normal(size=(n, n_f, n_t)))
    j[..., 1, 1] = (1 + 0.1 * rng.normal(size=(n, n_f, n_t))) * np.exp(1j * rng.normal(size=(n, n_f, n_t)))
    flags = np.zeros((n, n_f, n_t), bool)
    flags[1, 0, 0] = True                   # C01: one flagged cell in every SPW
    return SolutionSet(
        jones=j, flags=flags, time=5e9 + 600.0 * FIELDS.index(field) + spw + np.arange(n_t) * 60.0,
        freq=_freq(spw, n_f), delay=rng.normal(size=(n, n_f, n_t, 2)) if JT[key] == "K" else None,
        converged=np.ones((n_f, n_t), bool), n_iter=np.full((n_f, n_t), 7), cost=np.ones((n_f, n_t)),
        attrs=dict(jones_type=JT[key], field_name=field, scan_id=1 + FIELDS.index(field), spw=spw, n_ant=n,
                   field_ra=1.0, field_dec=0.5, matrix_form="diagonal", ref_ant=0, ref_ant_name="C00",
                   ant_names=names, solint_s=60.0, freqint_hz=4e6, phase_only=False, feed_basis="linear",
                   solver_backend="numba", apply_parang=False, ms="x.ms", preapply_chain=[]))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("pages") / "cal.h5")
    hdf5.write_terms(p, {k: [_set(k, f, spw) for f in FIELDS for spw in SPWS] for k in N_F})
    return p


def _pages(table, outdir, **sel):
    """{relative path: figure builder} of akplot's default pages (plot_table's own jobs)."""
    plans = [(k, plots._select(plots.load_series(hdf5.read_term(table, k), k), sel.get("field", ""),
                               sel.get("spw", ""))) for k in N_F]
    return {os.path.relpath(p, outdir): b for p, b in plots._jobs(table, outdir, plans, "antenna")}


def test_one_page_per_field_and_antenna(table, tmp_path):
    out = str(tmp_path / "p")
    files = plots.plot_table(table, out, quiet=True)
    got = sorted(os.path.relpath(f, out) for f in files)
    want = sorted([f"{k}_overview.png" for k in N_F]
                  + [os.path.join(k, f"{k}_{f}_{a}.png") for k in N_F for f in FIELDS for a in NAMES])
    assert got == want
    assert len(files) == len(N_F) * (1 + len(FIELDS) * len(NAMES))      # 27, not 3 * (1 + 2 * 11) = 69
    # an SPW selection: the same pages, the selected SPWs on them
    assert len(_pages(table, out, spw="0,2")) == len(N_F) * (1 + len(FIELDS) * len(NAMES))


def _spw_lines(ax, spw, kind):
    """The valid-data lines of SPW ``spw`` in ``ax``: those labelled or coloured as that SPW's (the
    k-th SPW's colours, k = its place among the page's SPWs)."""
    k = SPWS.index(spw)
    cols = {plots.SPW_COLOURS[h][k] for h in (0, 1)}
    return [ln for ln in ax.get_lines() if ln.get_label() != plots.FLAG_LABEL and ln.get_color() in cols]


@pytest.mark.parametrize("key", list(N_F))
def test_a_page_holds_every_spw_of_its_antenna(table, tmp_path, key):
    pages = _pages(table, str(tmp_path))
    series = {(s.field, s.spw): s for s in plots.load_series(hdf5.read_term(table, key), key)}
    fig = pages[os.path.join(key, f"{key}_J1331_C02.png")]()
    axes = fig.get_axes()
    assert len(axes) == (1 if KIND[key] == "delay" else 2)
    assert "SPW 0~2" in fig._suptitle.get_text()
    assert fig.get_size_inches()[0] == pytest.approx(6.0 + 1.2)       # one legend column, to the right
    for ax in axes:
        labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        assert labels == [f"{h} spw{x}" for x in SPWS for h in "XY"]
        for spw in SPWS:
            s = series[("J1331", spw)]
            lines = _spw_lines(ax, spw, KIND[key])
            n_curves = N_T[key] if KIND[key] == "freq" else N_F[key]
            assert len(lines) == 2 * n_curves, (spw, len(lines))      # both feeds
            x = s.freq / 1e9 if KIND[key] == "freq" else (s.time - np.floor(5e9 / 86400) * 86400) / 3600
            for ln in lines:
                np.testing.assert_allclose(np.asarray(ln.get_xdata(), float), x)
            assert len({ln.get_marker() for ln in lines}) == 1
        # the SPWs differ in colour and marker
        assert len({ln.get_color() for ln in ax.get_lines() if ln.get_label() != plots.FLAG_LABEL}) == 6
        assert len({ln.get_marker() for ln in ax.get_lines() if ln.get_label() != plots.FLAG_LABEL}) == 3
    # C02's values of SPW 1: the p feed's amplitude (delay) drawn
    s = series[("J1331", 1)]
    y = np.asarray(_spw_lines(axes[0], 1, KIND[key])[0].get_ydata(), float)
    ia = s.ant_names.index("C02")
    want = {"freq": lambda: np.abs(s.jones[ia, :, 0, 0, 0]), "time": lambda: np.abs(s.jones[ia, 0, :, 0, 0]),
            "delay": lambda: s.delay[ia, 0, :, 0]}[KIND[key]]()
    np.testing.assert_allclose(y, want)


def test_flags_reference_and_legend(table, tmp_path):
    pages = _pages(table, str(tmp_path))
    fig = pages[os.path.join("G0", "G0_3C286_C01.png")]()
    ax = fig.get_axes()[0]
    fl = [ln for ln in ax.get_lines() if ln.get_label() == plots.FLAG_LABEL]
    assert len(fl) == len(SPWS)                         # C01's flagged cell in every SPW, at its frequency
    assert all(ln.get_marker() == "x" and ln.get_color() == plots.FLAG_COLOUR for ln in fl)
    want = [_freq(x, N_F["G0"])[0] / 1e9 for x in SPWS]
    assert sorted(float(ln.get_xdata()[0]) for ln in fl) == pytest.approx(want)
    leg = [t.get_text() for t in ax.get_legend().get_texts()]
    assert leg[-1] == plots.FLAG_LABEL and leg.count(plots.FLAG_LABEL) == 1
    ref = pages[os.path.join("G0", "G0_3C286_C00.png")]().get_axes()[0]
    assert ref.get_title() == "C00 (ref)" and ref.title.get_color() == plots.REF_COLOUR
    assert fig.get_axes()[0].get_title() == "C01"


def test_antenna_missing_from_one_spw_has_a_page_with_the_others(table, tmp_path):
    pages = _pages(table, str(tmp_path))
    for key in N_F:
        fig = pages[os.path.join(key, f"{key}_3C286_C03.png")]()
        ax = fig.get_axes()[0]
        labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        assert labels == ["X spw0", "Y spw0", "X spw2", "Y spw2"], (key, labels)
        assert "SPW 0,2" in fig._suptitle.get_text()
        assert not _spw_lines(ax, 1, KIND[key])
        # SPW 2 keeps its colours (those of the third SPW), as on the pages of the other antennas
        colours = {ln.get_color() for ln in _spw_lines(ax, 2, KIND[key])}
        assert colours == {plots.SPW_COLOURS[h][2] for h in (0, 1)}
    # only SPW 1 selected: C03 has no page there
    assert not [p for p in _pages(table, str(tmp_path), spw="1") if p.endswith("_C03.png")]


def test_one_spw_looks_as_before(table, tmp_path):
    """A single SPW: no 'spw<S>' in the labels, the legend inside the axes, the page as wide as before."""
    pages = _pages(table, str(tmp_path), spw="2")
    fig = pages[os.path.join("G0", "G0_3C286_C01.png")]()
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["X", "Y", plots.FLAG_LABEL]
    assert fig.get_size_inches()[0] == pytest.approx(6.0)
    assert fig._suptitle.get_text() == "G0  field 3C286  SPW 2"


def test_overview_legend_of_many_spws_is_beside_the_grid(tmp_path):
    """32 SPWs (64 legend entries): the overview's legend goes to the right of the grid, every panel the
    same height; inside the first panel it collapsed the grid's first row to a strip (review 56a's MS).
    A few SPWs keep the legend inside the first panel."""
    p = str(tmp_path / "many.h5")
    hdf5.write_terms(p, {"G0": [_set("G0", "3C286", spw) for spw in range(32)]})
    series = plots.load_series(hdf5.read_term(p, "G0"), "G0")
    fig = plots.grid_figure(series, None, 0.0, "G0")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(fig.legends) == 1 and axes[0].get_legend() is None
    # X, Y per SPW, and flagged (C01's cells: not in the first panel) last
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) == 2 * 32 + 1 and texts[-1] == plots.FLAG_LABEL
    heights = [a.get_position().height for a in axes]
    assert min(heights) > 0.9 * max(heights), heights
    few = plots.grid_figure(series[:3], None, 0.0, "G0")
    assert not few.legends and few.axes[0].get_legend() is not None
    assert [t.get_text() for t in few.axes[0].get_legend().get_texts()][-1] == plots.FLAG_LABEL


def test_spw_styles_distinct_up_to_66():
    """Each of the first 66 SPWs of a panel has its own (colour, marker) per hand: with 6 markers and 6
    colours SPWs k and k + 6 looked the same (review 57d: spw0, spw6, spw12 all blue circles)."""
    for hand in (0, 1):
        styles = [(plots.SPW_COLOURS[hand][k % len(plots.SPW_COLOURS[hand])],
                   plots.SPW_MARKERS[k % len(plots.SPW_MARKERS)]) for k in range(66)]
        assert len(set(styles)) == 66
    # and as drawn: a page of 9 SPWs has 9 distinct (colour, marker) pairs per hand
    series = [plots.load_series([_set("G0", "3C286", spw)], "G0")[0] for spw in range(9)]
    fig = plots.antenna_figure(series, "C00", 0.0)
    ax = fig.axes[0]
    drawn = {(ln.get_label(), ln.get_color(), ln.get_marker()) for ln in ax.get_lines()
             if ln.get_label().startswith(("X spw", "Y spw"))}
    for h in ("X", "Y"):
        pairs = {(c, m) for lab, c, m in drawn if lab.startswith(h)}
        assert len(pairs) == 9, sorted(drawn)


def test_flat_amplitudes_are_drawn_flat():
    """A phase-only G's amplitudes (1 to float32 rounding) on a +-1% axis without an offset: drawn as
    they were, the rounding looked like structure on an axis labelled 1e-8+1 (review 57d)."""
    s = _set("G1", "3C286", 0)
    j = s.jones
    j[..., 0, 0] = np.exp(1j * np.angle(j[..., 0, 0])) * (1 + 1e-8 * np.arange(j.shape[2]))
    j[..., 1, 1] = np.exp(1j * np.angle(j[..., 1, 1]))
    series = plots.load_series([s], "G1")
    fig = plots.antenna_figure(series, "C02", 0.0)
    amp = fig.axes[0]
    lo, hi = amp.get_ylim()
    assert abs(lo - 0.99) < 1e-6 and abs(hi - 1.01) < 1e-6
    assert not amp.yaxis.get_major_formatter().get_useOffset()
    # a real spread is left to matplotlib
    fig = plots.antenna_figure(plots.load_series([_set("G1", "3C286", 0)], "G1"), "C02", 0.0)
    lo, hi = fig.axes[0].get_ylim()
    assert hi - lo > 0.05                           # the set's +-10% amplitudes, not the flat +-1%
