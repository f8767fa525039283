"""Review 55a: akinfo's caltable summary and akplot on hand-edited or foreign tables."""

import numpy as np

from alakazam.io import hdf5
from alakazam.io.hdf5 import SolutionSet


def _set(scan=1, spw=0, t0=5e9, n_ant=4, n_f=1, n_t=1, jt="K", field="3C286"):
    rng = np.random.default_rng(10 * scan + spw)
    j = np.zeros((n_ant, n_f, n_t, 2, 2), complex)
    j[..., 0, 0] = np.exp(1j * rng.normal(size=(n_ant, n_f, n_t)))
    j[..., 1, 1] = np.exp(1j * rng.normal(size=(n_ant, n_f, n_t)))
    return SolutionSet(
        jones=j, flags=np.zeros((n_ant, n_f, n_t), bool), time=t0 + np.arange(n_t) * 60.0,
        freq=1.4e9 + spw * 0.1e9 + np.arange(n_f) * 1e6,
        delay=rng.normal(size=(n_ant, n_f, n_t, 2)) if jt in ("K", "KC") else None,
        converged=np.ones((n_f, n_t), bool), n_iter=np.full((n_f, n_t), 7), cost=np.ones((n_f, n_t)),
        attrs=dict(jones_type=jt, field_name=field, scan_id=scan, spw=spw, n_ant=n_ant, field_ra=1.0,
                   field_dec=0.5, matrix_form="diagonal", ref_ant=0, ref_ant_name="C00",
                   ant_names=[f"C{i:02d}" for i in range(n_ant)], solint_s=60.0, freqint_hz=1e6,
                   phase_only=False, feed_basis="linear", solver_backend="numba", apply_parang=False,
                   ms="x.ms", preapply_chain=[]))


def test_summary_spws_of_a_scan_in_ascending_order(tmp_path):
    """A K's time is its data's mean time, which differs per SPW: spw 1 a little earlier than spw 0
    listed spw 1 first in that scan.  listobs's order: scans in time order, SPWs ascending."""
    p = str(tmp_path / "k.h5")
    sets = []
    for scan, t in ((1, 5e9), (4, 5e9 + 1800), (10, 5e9 + 5400), (7, 5e9 + 3600)):
        sets += [_set(scan, 0, t + 0.4), _set(scan, 1, t + 0.1 * (scan % 2))]   # spw 1 earlier in 1, 7
    hdf5.write_term(p, "K0", sets)
    order = [(r["scan"], r["spw"]) for r in hdf5.summary(p)]
    assert order == [(1, 0), (1, 1), (4, 0), (4, 1), (7, 0), (7, 1), (10, 0), (10, 1)], order


def _nan_table(path):
    """K0 (delays) and G0 (2 SPWs, 3 times): NaN values with flags False on some solutions, and one
    flagged NaN solution (alakazam's own convention: not counted)."""
    k = [_set(1, spw, 5e9 + spw) for spw in (0, 1)]
    k[0].delay[2, 0, 0, 1] = np.nan                 # C02's q delay, unflagged
    k[1].delay[3] = np.nan                          # C03 both hands, unflagged
    k[1].jones[1] = np.nan                  # C01: jones NaN, delay finite: usable (a K applies its delays)
    g = [_set(1, spw, 5e9, n_t=3, jt="G") for spw in (0, 1)]
    g[0].jones[0, 0, 1, 0, 0] = np.nan              # unflagged
    g[0].jones[1, 0, 2] = np.nan                    # flagged below: not counted
    g[0].flags[1, 0, 2] = True
    g[1].jones[2, 0, :, 1, 1] = np.inf              # 3 unflagged
    hdf5.write_terms(path, {"K0": k, "G0": g})
    return {("K0", 0): 1, ("K0", 1): 1, ("G0", 0): 1, ("G0", 1): 3}


def test_akinfo_counts_unflagged_nonfinite_solutions(tmp_path, caplog, capsys):
    """Review 55a: a table whose values are NaN with flags False was reported clean (flagged 12.5%,
    converged 100%).  Now each group says how many such solutions it has (column 'NaN unflagged',
    separate from 'flagged', which stays the table's flags) and one warning per key names the count."""
    from alakazam.caltasks import akinfo
    from alakazam.cli import main

    p = str(tmp_path / "nan.h5")
    want = _nan_table(p)
    caplog.set_level("WARNING")
    groups = akinfo(caltable=p)["groups"]
    assert {(g["key"], g["spw"]): g["nonfinite"] for g in groups} == want
    g0 = [g for g in groups if g["key"] == "G0" and g["spw"] == 0][0]
    assert g0["flagged"] == 1 / 12                  # the flagged NaN solution, as before
    msgs = [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()]
    assert len(msgs) == 2, msgs
    assert "2 of 8 solutions of K0" in msgs[0] and "4 of 24 solutions of G0" in msgs[1]
    assert main(["info", p]) == 0
    out = capsys.readouterr().out
    assert "NaN unflagged" in out and "3/12" in out
    clean = str(tmp_path / "clean.h5")
    hdf5.write_term(clean, "G0", [_set(1, 0, 5e9, n_t=3, jt="G")])
    assert [g["nonfinite"] for g in akinfo(caltable=clean)["groups"]] == [0]
    assert main(["info", clean]) == 0
    assert "NaN unflagged" not in capsys.readouterr().out     # the column only when there are some


def test_akplot_warns_once_per_key_about_undrawable_solutions(tmp_path, caplog):
    from alakazam import plots

    p = str(tmp_path / "nan.h5")
    _nan_table(p)
    caplog.set_level("WARNING")
    plots.plot_table(p, str(tmp_path / "pl"), quiet=True)
    msgs = [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()]
    assert len(msgs) == 2, msgs
    assert "2 of 8 solutions of K0" in msgs[0] and "cannot be drawn" in msgs[0]
    assert "4 of 24 solutions of G0" in msgs[1]
    caplog.clear()
    plots.plot_table(p, str(tmp_path / "pl"), jones="G0", spw="1", quiet=True)     # the selection's count
    msgs = [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()]
    assert len(msgs) == 1 and "3 of 12 solutions of G0" in msgs[0], msgs


def _legend(fig):
    ax = [a for a in fig.get_axes() if a.get_legend() is not None][0]
    return {t.get_text(): h.get_color() for t, h in zip(ax.get_legend().get_texts(),
                                                        ax.get_legend().legend_handles)}


def test_overview_spws_have_their_own_colours_and_terms_only_their_hands(tmp_path):
    """Review 55a: K/KC and CP overviews drew 'X spw0' and 'X spw1' in one colour (markers of 2 px
    differ invisibly), and KC a constant 0 labelled 'Y' (KC holds tau_p only; CP J[1, 1] only)."""
    from alakazam import plots

    p = str(tmp_path / "t.h5")
    kc = [_set(0, spw, 5e9, jt="KC") for spw in (0, 1)]
    for s in kc:
        s.delay[..., 1] = 0.0
        s.jones[..., 1, 1] = 1.0
    cp = [_set(0, spw, 5e9, n_f=4, jt="CP") for spw in (0, 1)]
    for s in cp:
        s.jones[..., 0, 0] = 1.0
    hdf5.write_terms(p, {"K0": [_set(1, spw, 5e9) for spw in (0, 1)], "KC0": kc, "CP0": cp})
    t0 = np.floor(5e9 / 86400) * 86400
    for key, labels in (("K0", ["X spw0", "Y spw0", "X spw1", "Y spw1"]), ("KC0", ["X-Y spw0", "X-Y spw1"]),
                        ("CP0", ["Y-X spw0", "Y-X spw1"])):
        fig = plots.grid_figure(plots.load_series(hdf5.read_term(p, key), key), None, t0, key)
        leg = _legend(fig)
        assert list(leg) == labels, (key, leg)
        assert len(set(leg.values())) == len(labels), (key, leg)       # every entry its own colour
        # no line of a hand the term does not hold: each panel has one line per drawn hand and SPW
        for ax in fig.get_axes():
            if ax.get_visible():
                assert len([ln for ln in ax.get_lines() if ln.get_label() != plots.FLAG_LABEL]) == len(labels)


def test_akinfo_fluxscale_without_results_is_a_parameter_error_before_begin(tmp_path, caplog, capsys):
    """Review 55a: akinfo(caltable=..., fluxscale=True) on a table without fluxscale results failed after
    the Begin line with an AlakazamError traceback; `alakazam fluxscale-info` exited 2."""
    import pytest

    from alakazam.caltasks import akinfo
    from alakazam.cli import main
    from alakazam.errors import ParameterError

    p = str(tmp_path / "g.h5")
    hdf5.write_term(p, "G0", [_set(1, 0, 5e9, n_t=3, jt="G")])
    caplog.set_level("INFO")
    with pytest.raises(ParameterError, match="fluxscale: .*has no fluxscale results"):
        akinfo(caltable=p, fluxscale=True)
    assert not [r for r in caplog.records if "Begin Task" in r.getMessage()]
    odd = tmp_path / "x.h5"
    odd.write_text("not hdf5")
    with pytest.raises(ParameterError, match="caltable: .*not an HDF5 file"):
        akinfo(caltable=str(odd), fluxscale=True)
    assert not [r for r in caplog.records if "Begin Task" in r.getMessage()]
    assert main(["fluxscale-info", p]) == 2
    assert "has no fluxscale results" in capsys.readouterr().err


def test_akplot_outdir_text_says_other_tables_pages_are_refused(tmp_path):
    """Review 55a: tasks_xml/akplot.xml said 'existing files of the same name are replaced', but pages
    drawn from another table are refused (README; test_plots.py pins the behaviour).  The text the
    task's help shows now says what happens -- checked here against the behaviour."""
    import pytest

    from alakazam import plots
    from alakazam.caltasks import akplot
    from alakazam.errors import ParameterError

    text = " ".join(akplot.spec.param("outdir").description.split())
    assert "existing files of the same name are replaced" not in text
    assert "replaced only when akplot drew it from this same table" in text
    assert "another table" in text and "refused" in text
    a, b = str(tmp_path / "a.h5"), str(tmp_path / "b.h5")
    for p in (a, b):
        hdf5.write_term(p, "G0", [_set(1, 0, 5e9, n_t=3, jt="G")])
    out = str(tmp_path / "pl")
    n = len(plots.plot_table(a, out, quiet=True))
    assert len(plots.plot_table(a, out, quiet=True)) == n          # the same table: replaced
    with pytest.raises(ParameterError, match="not drawn from"):
        plots.plot_table(b, out, quiet=True)                        # another table's: refused


def test_akinfo_summarises_a_casa_caltable(sim_linear, tmp_path, caplog, capsys):
    """Review 55a (optional item): akinfo on a CASA caltable was refused as 'not a Measurement Set' (and
    caltable= gave a traceback after Begin), though akplot and akapply read such tables.  Now it is
    summarised as they read it; vis= and an MS given as caltable= say which parameter to use."""
    import pytest

    from alakazam.caltasks import akinfo
    from alakazam.cli import main
    from alakazam.errors import ParameterError
    from alakazam.io import casatable

    ms, _ = sim_linear
    tb = str(tmp_path / "g.tb")
    sets = [_set(1, spw, 5e9, n_t=3, jt="G") for spw in (0, 1)]
    sets[1].flags[2, 0, :] = True
    sets[1].jones[2, 0] = np.nan
    casatable.write_table(sets, "G0", tb, ms=ms)
    groups = akinfo(caltable=tb)["groups"]
    assert [(g["key"], g["spw"], g["n_ant"], g["n_time"]) for g in groups] == [("G0", 0, 4, 3),
                                                                             ("G0", 1, 4, 3)]
    assert [g["flagged"] for g in groups] == [0.0, 0.25]
    assert groups[0]["converged"] is None                  # a CASA table records none: '-'
    assert groups[0]["time_interval"] is None              # CASA's INTERVAL 0 is no solint: '-' (55d)
    assert main(["info", tb]) == 0
    assert "CASA caltable, G Jones" in capsys.readouterr().out
    caplog.set_level("INFO")
    caplog.clear()             # (the records of the summaries above)
    with pytest.raises(ParameterError, match="vis: .*is a CASA calibration table.*akinfo\\(caltable="):
        akinfo(vis=tb)
    with pytest.raises(ParameterError, match="fluxscale: .*CASA calibration table"):
        akinfo(caltable=tb, fluxscale=True)
    with pytest.raises(ParameterError, match="caltable: .*is a Measurement Set: akinfo\\(vis="):
        akinfo(caltable=ms)
    assert not [r for r in caplog.records if "Begin Task" in r.getMessage()]
