"""Solution plots (alakazam.plots, akplot, ``alakazam plot``, YAML ``plots:``): every term type is
rendered, and the axes hold what the module docstring promises (lines per feed, points per
solution, labels, flagged cells as separate grey crosses, the reference antenna marked)."""

import os

import numpy as np
import pytest
import yaml
from alakazam.caltasks import akplot

from alakazam import plots
from alakazam.cli import main
from alakazam.errors import ParameterError
from alakazam.io import hdf5

KEYS = ["K0", "G0", "G1", "KC0", "CP0", "D0"]
KIND = {"K0": "delay", "G0": "freq", "G1": "time", "KC0": "delay", "CP0": "freq", "D0": "freq"}


def _lines(ax, label=None):
    return [ln for ln in ax.get_lines() if label is None or ln.get_label() == label]


def test_every_term_is_rendered_per_antenna_and_field(small_chain_table, tmp_path):
    """iteraxis='antenna': one page per (field, antenna), both SPWs on it (as plotms)."""
    ms, cal, truth = small_chain_table
    out = str(tmp_path / "plots")
    files = akplot(caltable=cal, outdir=out)["files"]
    assert all(os.path.getsize(f) > 1000 for f in files)
    for key in KEYS:
        assert os.path.join(out, f"{key}_overview.png") in files
        sets = hdf5.read_term(cal, key)
        names = sets[0].ant_names
        for a in names:
            assert os.path.join(out, key, f"{key}_3C286_{a}.png") in files
    assert len(files) == len(KEYS) * (1 + 5)


@pytest.mark.parametrize("key", KEYS)
def test_axes_contents(small_chain_table, key):
    ms, cal, truth = small_chain_table
    (s,) = [x for x in plots.load_series(hdf5.read_term(cal, key), key) if x.spw == 0]
    kind = plots.plot_kind(s.jones_type, len(s.freq), len(s.time), s.delay is not None)
    assert kind == KIND[key]
    t0 = np.floor(s.time.min() / 86400) * 86400
    fig = plots.antenna_figure([s], s.ant_names[1], t0)      # C02, not the reference
    axes = fig.get_axes()
    if kind == "delay":
        assert len(axes) == 1 and axes[0].get_ylabel().startswith("delay (ns)")
        assert "time" in axes[0].get_xlabel()
    else:
        assert [ax.get_ylabel().split(" [")[0] for ax in axes] == ["amplitude", "phase (deg)"]
    xlab = axes[-1].get_xlabel()
    assert ("frequency" in xlab) if kind == "freq" else ("time" in xlab)
    labels = [ln.get_label() for ln in _lines(axes[0]) if not ln.get_label().startswith("_")]
    # KC holds tau_p only, CP J[1, 1] only (registry value_hands): one value drawn, not beside a constant
    want_labels = {"D0": ["d_XY", "d_YX"], "KC0": ["X-Y"], "CP0": ["Y-X"]}.get(key, ["X", "Y"])
    assert labels == want_labels
    n_curves = len(s.time) if kind == "freq" else len(s.freq)
    for ax in axes:
        data = _lines(ax)
        assert len(data) == len(want_labels) * n_curves     # the feeds, one line per time (freq) or bin
        n_pts = len(s.freq) if kind == "freq" else len(s.time)
        assert all(len(ln.get_xdata()) == n_pts for ln in data)
        assert not _lines(ax, plots.FLAG_LABEL)      # nothing flagged in this table
    # values drawn are the solutions: amplitude of the p feed (or the delay) of antenna 1
    y = np.asarray(_lines(axes[0])[0].get_ydata(), float)
    if kind == "delay":
        np.testing.assert_allclose(y, s.delay[1, 0, :, 0])
    else:
        el = {"D0": s.jones[1, :, 0, 0, 1], "CP0": s.jones[1, :, 0, 1, 1]}.get(key, s.jones[1, :, 0, 0, 0])
        want = np.abs(el) if kind == "freq" else np.abs(s.jones[1, 0, :, 0, 0])
        np.testing.assert_allclose(y, want)
    assert axes[0].get_title() == "C02"


def test_flagged_cells_are_distinct_and_reference_marked(small_chain_table, tmp_path):
    ms, cal, truth = small_chain_table
    sets = hdf5.read_term(cal, "G1")
    flagged = 0
    for s in sets:
        if s.spw == 0 and s.scan_id == 1:
            s.flags[1, 0, 1:3] = True                # C02, two solution times
            s.jones[1, 0, 2] = np.nan                # one of them without a value
            flagged = 2
    tab = str(tmp_path / "flagged.h5")
    hdf5.write_term(tab, "G1", sets)
    (s,) = [x for x in plots.load_series(hdf5.read_term(tab, "G1"), "G1") if x.spw == 0]
    fig = plots.antenna_figure([s], s.ant_names[1], np.floor(s.time.min() / 86400) * 86400)
    for ax in fig.get_axes():
        (fl,) = _lines(ax, plots.FLAG_LABEL)
        assert len(fl.get_xdata()) == 2 * flagged    # both feeds
        assert fl.get_marker() == "x" and fl.get_linestyle() == "None"
        assert fl.get_color() == plots.FLAG_COLOUR
        good = _lines(ax)[0]
        assert np.isnan(np.asarray(good.get_ydata(), float)).sum() == flagged   # gaps in the valid line
        assert good.get_color() != plots.FLAG_COLOUR
    # the overview grid: one panel per antenna, the reference antenna's titled "(ref)" in red
    grid = plots.grid_figure(plots.load_series(hdf5.read_term(tab, "G1"), "G1"), None,
                             np.floor(s.time.min() / 86400) * 86400, "G1")
    titles = {ax.get_title(): ax for ax in grid.get_axes() if ax.get_visible()}
    assert set(titles) == {"C00 (ref)", "C02", "C03", "C04", "C05"}
    assert titles["C00 (ref)"].title.get_color() == plots.REF_COLOUR
    assert titles["C02"].title.get_color() != plots.REF_COLOUR
    assert _lines(titles["C02"], plots.FLAG_LABEL)


def test_cli_selection_and_iteraxis(small_chain_table, tmp_path, capsys):
    ms, cal, truth = small_chain_table
    out = str(tmp_path / "p")
    assert main(["--quiet", "plot", cal, "--jones", "g1", "k", "--spw", "1", "--iteraxis", "spw",
                 "--outdir", out]) == 0
    got = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    assert got == ["G1/G1_3C286_spw1_amp.png", "G1/G1_3C286_spw1_phase.png", "G1_overview.png",
                   "K0/K0_3C286_spw1.png", "K0_overview.png"]
    with pytest.raises(ParameterError, match="iteraxis"):
        akplot(caltable=cal, outdir=out, iteraxis="baseline")
    with pytest.raises(ParameterError, match="field.*3C147 has no solutions"):
        akplot(caltable=cal, outdir=out, field="3C147")
    assert main(["plot", cal, "--spw", "7", "--outdir", out]) == 2
    assert "SPW 7 has no solutions" in capsys.readouterr().err
    assert main(["plot", cal, "--spw", "0~x", "--outdir", out]) == 2
    assert "'0~x' is not a list of SPW ids" in capsys.readouterr().err
    for bad in ("0~", "~1", "1~0"):     # a range needs both ends, in order (review 57d: '0~' plotted all)
        assert main(["plot", cal, "--spw", bad, "--outdir", out]) == 2
        assert f"{bad!r} is not a list of SPW ids" in capsys.readouterr().err
    assert len(akplot(caltable=cal, jones=["KC0"], spw="0~1", outdir=str(tmp_path / "r"))["files"]) == 6


def test_yaml_plots_key_and_run_option(small_chain_table, tmp_path):
    ms, cal, truth = small_chain_table
    cfg = tmp_path / "g.yaml"
    cfg.write_text(yaml.safe_dump({"solve": [dict(ms=ms, output=str(tmp_path / "g.h5"), jones=["G"],
                                                  field=["3C286"], ref_ant="C00", plots="pl", quiet=True)]}))
    assert main(["--quiet", "run", str(cfg)]) == 0
    assert os.path.isfile(tmp_path / "pl" / "G0_overview.png")          # relative to the YAML file
    cfg.write_text(yaml.safe_dump({"solve": [dict(ms=ms, output=str(tmp_path / "g2.h5"), jones=["G"],
                                                  field=["3C286"], ref_ant="C00", quiet=True)]}))
    assert main(["--quiet", "run", "--plots", str(tmp_path / "cli"), str(cfg)]) == 0
    assert os.path.isfile(tmp_path / "cli" / "G0" / "G0_3C286_C00.png")


def test_run_plots_of_several_blocks(small_chain_table, tmp_path, capsys):
    """README: `alakazam run --plots plots examples/fluxscale.yaml` -- two solve blocks that both write a
    G0 (cal.h5, gains.h5) -- always failed: block 2's G0 pages would replace block 1's (pages of another
    table, refused), and only after block 1 had solved and block 2 had solved again.  --plots now gives
    each block without its own plots: key a subdirectory named for its output table; two blocks that name
    one directory themselves are refused before anything runs."""
    ms, _, _ = small_chain_table
    blocks = [dict(ms=ms, output=str(tmp_path / "cal.h5"), jones=["G"], field=["3C286"], ref_ant="C00",
                   quiet=True),
              dict(ms=ms, output=str(tmp_path / "gains.h5"), jones=["G"], field=["3C286"], ref_ant="C00",
                   time_interval=["2min"], quiet=True)]
    cfg = tmp_path / "two.yaml"
    cfg.write_text(yaml.safe_dump({"solve": blocks}))
    for _ in range(2):          # (again: each block replaces its own pages)
        assert main(["--quiet", "run", "--plots", str(tmp_path / "pl"), str(cfg)]) == 0
    for name in ("cal", "gains"):
        assert os.path.isfile(tmp_path / "pl" / name / "G0_overview.png")
    assert sorted(os.listdir(tmp_path / "pl")) == ["cal", "gains"]
    # one block: the directory itself (as before)
    cfg.write_text(yaml.safe_dump({"solve": blocks[:1]}))
    assert main(["--quiet", "run", "--plots", str(tmp_path / "one"), str(cfg)]) == 0
    assert os.path.isfile(tmp_path / "one" / "G0_overview.png")
    # the same plots: directory in both blocks, outputs different: refused before either block solves
    out = [tmp_path / "c2.h5", tmp_path / "g2.h5"]
    cfg.write_text(yaml.safe_dump({"solve": [dict(b, output=str(o), plots="same")
                                             for b, o in zip(blocks, out)]}))
    capsys.readouterr()
    assert main(["--quiet", "run", str(cfg)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"solve[1].plots: 'same' also holds the plots of solve[0] (its output '{out[0]}')" in err
    assert not any(o.exists() for o in out) and not (tmp_path / "same").exists()
    # (a hostile review) tables of one name in two folders: their own subdirectories, not a refusal
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg.write_text(yaml.safe_dump({"solve": [dict(b, output=str(tmp_path / d / "cal.h5"))
                                             for b, d in zip(blocks, "ab")]}))
    assert main(["--quiet", "run", "--plots", str(tmp_path / "pn"), str(cfg)]) == 0
    assert sorted(os.listdir(tmp_path / "pn")) == ["cal", "cal-2"]
    # a plots: key of the block's own, even '' (no plots), is kept; --plots=~/x expands ~
    home = tmp_path / "home"
    home.mkdir()
    cfg.write_text(yaml.safe_dump({"solve": [dict(blocks[0], plots=""), blocks[1]]}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        assert main(["--quiet", "run", "--plots=~/pt", str(cfg)]) == 0
    assert sorted(os.listdir(home / "pt")) == ["G0", "G0_overview.png"]      # block 2 only, DIR itself


def test_selection_and_outdir_messages(small_chain_table, tmp_path):
    """A bad field with a bad SPW listed no SPWs ("SPWs with solutions: "), and a file in outdir named
    like a key failed after Begin with a FileExistsError (a review): the table's SPWs are listed, and
    the file is a parameter error up front."""
    _, cal, _ = small_chain_table
    with pytest.raises(ParameterError) as e:
        akplot(caltable=cal, outdir=str(tmp_path / "p"), field="NOPE", spw="7")
    assert e.value.errors["spw"][0].endswith("SPWs with solutions: 0, 1")
    out = tmp_path / "q"
    out.mkdir()
    (out / "K0").write_text("mine")
    with pytest.raises(ParameterError) as e:
        akplot(caltable=cal, outdir=str(out), jones="K0")
    assert "holds a file named K0" in e.value.errors["outdir"][0]
    assert (out / "K0").read_text() == "mine" and sorted(os.listdir(out)) == ["K0"]


def test_pages_of_another_table_or_not_by_akplot_are_never_overwritten(small_chain_table, tmp_path):
    """akplot wrote its pages over whatever was there: a second table's K0 into the same outdir replaced
    the first table's K0 pages, and a user's PNG named like a page was replaced too.  Each page now
    names its table (PNG text); akplot replaces only pages of the same table, and refuses the rest
    before writing anything (akcal's plotdir too, before the solve)."""
    import shutil

    from alakazam.caltasks import akcal

    ms, cal, _ = small_chain_table
    other = str(tmp_path / "other.h5")
    shutil.copy(cal, other)
    out = tmp_path / "p"
    files = akplot(caltable=cal, outdir=str(out), jones="K0")["files"]
    assert plots.page_source(files[0]) == os.path.realpath(cal)
    before = {f: open(f, "rb").read() for f in files}
    with pytest.raises(ParameterError) as e:
        akplot(caltable=other, outdir=str(out), jones="K0")
    msg = e.value.errors["outdir"][0]
    assert f"holds {len(files)} pages" in msg and f"drawn from {os.path.realpath(cal)}" in msg
    assert {f: open(f, "rb").read() for f in files} == before          # nothing written
    assert len(akplot(caltable=cal, outdir=str(out), jones="K0")["files"]) == len(files)   # same table
    mine = out / "G1_overview.png"
    mine.write_bytes(b"\x89PNG my own figure")
    with pytest.raises(ParameterError, match="G1_overview.png: not written by akplot"):
        akplot(caltable=cal, outdir=str(out), jones="G1")
    assert mine.read_bytes() == b"\x89PNG my own figure" and not (out / "G1").exists()
    # akcal's plotdir: refused before the solve (no table written), the pages left as they were
    new = str(tmp_path / "new.h5")
    with pytest.raises(ParameterError, match="not drawn from") as e:
        akcal(vis=ms, caltable=new, field="3C286", jones=["K"], solint=["inf"], refant="C00",
              plotdir=str(out))
    assert not os.path.exists(new) and {f: open(f, "rb").read() for f in files} == before
    # keys of other types than the block's are not in its way
    akcal(vis=ms, caltable=new, field="3C286", jones=["KC"], solint=["inf"], refant="C00", parang=True,
          plotdir=str(out), minblperant=3)
    assert plots.page_source(str(out / "KC0_overview.png")) == os.path.realpath(new)
