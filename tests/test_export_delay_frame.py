"""akexport of a per-scan K and the G / T solved after it, in CASA's delay reference (io/casatable.py,
"Delay frame"; calibration/delayframe.py).

akapply interpolates a G solved after a K per scan in that K's frame.  The export used to write the K at
0 Hz and the G as solved, so CASA's applycal of K(scan) + G(2 min) with interp ['nearest', 'linear']
left a TARGET between calibrator scans 0.0665 rad rms of row phase against akapply's 0.0126 (the noise;
session 34).  Now such a K is written at nu_ref (its solution bin's centre) and the G framed:
G_exp = G K(t_s, nu_ref), per hand.  The CASA parts run when CASA is available (tests/casa_python.py).
"""

import os
import shutil
import sys

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akapply, akexport
from alakazam.io import casatable, hdf5

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import casa_python, run_casa  # noqa: E402  (tests/casa_python.py)

TWO_PI_NS = 2e-9 * np.pi


@pytest.fixture(scope="module")
def exported(constant_gains, tmp_path_factory):
    """K0 and the gain of the K(scan) and K(inf) tables (+ G, T, G of 4-MHz bins), exported."""
    ms, cals = constant_gains
    d = tmp_path_factory.mktemp("export_frame")
    out = {}
    for name, gain in (("scan", "G0"), ("inf", "G0"), ("scanT", "T0"), ("infT", "T0"), ("scanF", "G0")):
        for key in ("K0", gain):
            out[name, key] = str(d / f"{name}.{key}.tb")
            akexport(caltable=cals[name], jones=key, casatable=out[name, key])
    return ms, cals, out, d


def _chan_freq(tb):
    with table(os.path.join(tb, "SPECTRAL_WINDOW"), ack=False) as t:
        return [np.asarray(t.getcell("CHAN_FREQ", i), float) for i in range(t.nrows())]


def _rows(tb):
    with table(tb, ack=False) as t:
        return (t.getcol("TIME"), t.getcol("ANTENNA1"), t.getcol("SPECTRAL_WINDOW_ID"),
                [np.asarray(t.getcell("CPARAM", r)) for r in range(t.nrows())],
                [np.asarray(t.getcell("FLAG", r)) for r in range(t.nrows())])


def _k_at(k_sets, field, scan, spw, ant, nu):
    """exp(-2 pi i tau nu) per hand of the K solution of (field, scan, spw) -- one per scan here."""
    (k,) = [s for s in k_sets if (s.field_name, s.scan_id, s.spw) == (field, scan, spw)]
    a = k.ant_names.index(ant)
    tau = k.delay[a, 0, 0]
    return np.where(k.hand_flags()[a, 0, 0] | ~np.isfinite(tau), 1.0, np.exp(-1j * TWO_PI_NS * tau * nu))


def _check_framed(tb, gain_sets, k_sets, ants, nu_ref_of):
    """Every unflagged row of the exported gain table ``tb`` equals its solution (``gain_sets``) times
    K(t_s, nu_ref) per hand; (rows checked, the largest phase the frame moved)."""
    t, a1, spw, par, flg = _rows(tb)
    sets = {(round(float(x), 3), s.spw): (s, i) for s in gain_sets for i, x in enumerate(s.time)}
    n, off = 0, [0.0]
    for r in range(len(t)):
        s, it = sets[round(float(t[r]), 3), int(spw[r])]
        ant = ants[a1[r]]
        if ant not in s.ant_names or flg[r].all():
            continue
        a = s.ant_names.index(ant)
        g = np.stack([s.jones[a, :, it, 0, 0], s.jones[a, :, it, 1, 1]], -1)      # (n_bins, 2)
        want = g * _k_at(k_sets, s.field_name, s.scan_id, s.spw, ant, nu_ref_of(s.spw))[None]
        ok = ~flg[r] & np.isfinite(want)
        np.testing.assert_allclose(par[r][ok], want[ok], rtol=1e-6, atol=1e-6)
        off.append(np.abs(np.angle(par[r][ok] / g[ok])).max())
        n += 1
    return n, max(off)


@pytest.mark.parametrize("name,gain", [("scan", "G0"), ("scanT", "T0"), ("scanF", "G0")])
def test_exported_values(exported, name, gain):
    """K(scan): CHAN_FREQ = nu_ref (the K bin's centre, from the K table alone), tau_C = -tau; the gain
    times K(t_s, nu_ref) of its own scan per hand (a T exported as G Jones, its hands then differ);
    one value per bin (a G of 4-MHz bins: the same nu_ref for every bin)."""
    ms, cals, out, _ = exported
    with table(os.path.join(ms, "ANTENNA"), ack=False) as t:
        ants = [str(x) for x in t.getcol("NAME")]
    k_sets = hdf5.read_term(cals[name], "K0")
    nu_ref = {sp: np.median([s.freq[0] for s in k_sets if s.spw == sp]) for sp in {s.spw for s in k_sets}}
    assert [list(f) for f in _chan_freq(out[name, "K0"])] == [[nu_ref[0]]]
    assert 1.2e9 < nu_ref[0] < 1.4e9 and nu_ref[0] == casatable.k_reference(k_sets, 0)
    assert casatable.viscal(out[name, gain]) == ("B Jones" if name == "scanF" else "G Jones")
    n, framed_off = _check_framed(out[name, gain], hdf5.read_term(cals[name], gain), k_sets, ants,
                                  lambda sp: nu_ref[sp])
    assert n >= 60 and framed_off > 0.5              # the frame moves the phases by radians


def test_a_k_per_field_and_its_gain_are_unchanged(exported):
    ms, cals, out, _ = exported
    assert [list(f) for f in _chan_freq(out["inf", "K0"])] == [[0.0]]
    t, a1, spw, par, flg = _rows(out["inf", "G0"])
    sets = {(round(float(x), 3), s.spw): (s, i) for s in hdf5.read_term(cals["inf"], "G0")
            for i, x in enumerate(s.time)}
    with table(os.path.join(ms, "ANTENNA"), ack=False) as tb:
        ants = [str(x) for x in tb.getcol("NAME")]
    for r in range(len(t)):
        s, it = sets[round(float(t[r]), 3), int(spw[r])]
        if ants[a1[r]] not in s.ant_names:
            assert flg[r].all()
            continue
        a = s.ant_names.index(ants[a1[r]])
        np.testing.assert_allclose(par[r][0], [s.jones[a, 0, it, 0, 0], s.jones[a, 0, it, 1, 1]], rtol=1e-6)
    # a K(scan) whose gain spans the scans (a bandpass over all scans, then G per 2 min): the K is framed
    # by the 2-min G; a table with only K(scan) and a gain over all scans would keep 0 Hz
    assert casatable.delay_frame(cals["kbg"], "K0", hdf5.read_term(cals["kbg"], "K0"))[1]
    b = hdf5.read_term(cals["kbg"], "G0")
    assert casatable.delay_frame(cals["kbg"], "G0", b)[0] is b


def _target(ms):
    with table(ms, ack=False) as t:
        q = t.query("FIELD_ID==2")
        c = q.getcol("CORRECTED_DATA")
        q.close()
    return c


def _row_phase_rms(c):
    ph = np.angle(c[..., [0, 3]].mean(axis=(1, 2)))     # the truth is 0 (a 0.7 Jy point at the centre)
    return float(np.sqrt((ph ** 2).mean()))


def _akapply(ms, tables, keys, interp):
    akapply(vis=ms, gaintable=tables, jones=keys, interp=interp, field="TARGET")
    return _target(ms)


@pytest.mark.parametrize("name,gain,interp", [("scan", "G0", "linear"), ("scanT", "T0", "linear")])
def test_export_then_import_is_akapply(exported, monkeypatch, name, gain, interp):
    """akapply of the exported CASA tables read back (CASA's nu_ref kept, no frame: CASA's own
    interpolation) gives akapply of our table on the TARGET between calibrator scans, to float32
    precision; with the old export (0 Hz, gain as solved) it was off by 5x the noise."""
    ms, cals, out, d = exported
    interp = ["nearest", interp]
    ours = _akapply(ms, [cals[name]] * 2, ["K0", gain], interp)
    back = _akapply(ms, [out[name, "K0"], out[name, gain]], ["K0", "G0"], interp)
    err = np.abs(back - ours).max() / np.abs(ours).max()
    print(f"{name}: export-import vs akapply {err:.2g} of max |V|")
    assert err < 1e-5
    monkeypatch.setattr(casatable, "delay_frame", lambda table, key, sets: (sets, None))
    old = {}
    for key in ("K0", gain):
        old[key] = str(d / f"old_{name}.{key}.tb")
        shutil.rmtree(old[key], ignore_errors=True)
        akexport(caltable=cals[name], jones=key, casatable=old[key])
    before = _akapply(ms, [old["K0"], old[gain]], ["K0", "G0"], interp)
    print(f"{name}: row phase rms ours "
          f"{_row_phase_rms(ours):.4f}, export-import {_row_phase_rms(back):.4f}, old export "
          f"{_row_phase_rms(before):.4f}")
    assert _row_phase_rms(before) > 3 * _row_phase_rms(ours)


def test_a_multi_bin_gain_between_scans(exported):
    """A G of 4-MHz bins (B Jones) after K(scan), 'linear' in time and nearest bin: exact at the solution
    times (test_exported_values); between scans CASA's interpolation of G K(t_s, nu_ref) leaves the
    delay change times (f_b - nu_ref), within 1.15x of one K for the whole run."""
    ms, cals, out, _ = exported
    control = _row_phase_rms(_akapply(ms, [cals["infF"]] * 2, ["K0", "G0"], ["nearest", "linear"]))
    back = _row_phase_rms(_akapply(ms, [out["scanF", "K0"], out["scanF", "G0"]], ["K0", "G0"],
                                   ["nearest", "linear"]))
    print(f"4-MHz bins: export-import {back:.4f}, control {control:.4f}")
    assert back < 1.15 * control


# ---------------------------------------------------------------- CASA itself (optional)
def test_casa_applycal_between_scans(exported, tmp_path):
    """CASA's applycal of the exported K(scan) + G(2 min) and K(scan) + T(2 min), interp ['nearest',
    'linear'], on the TARGET between calibrator scans: row phases within 1.15x of the K(inf) control
    (0.0665 rad against 0.0126 before, 5x), and equal to akapply of our table (float32)."""
    ms, cals, out, _ = exported
    casa_python() or pytest.skip("CASA (casatools/casatasks) not available")
    runs = {"inf": "G0", "scan": "G0", "scanT": "T0"}
    lines = ["from casatasks import applycal"]
    for name, gain in runs.items():
        m = str(tmp_path / f"casa_{name}.ms")
        shutil.copytree(ms, m)
        lines.append(f"applycal(vis={m!r}, field='TARGET', gaintable={[out[name, 'K0'], out[name, gain]]!r}, "
                     "interp=['nearest', 'linear'], parang=False, calwt=False, applymode='calonly')")
    run_casa("\n".join(lines), str(tmp_path))
    casa = {name: _target(str(tmp_path / f"casa_{name}.ms")) for name in runs}
    rms = {name: _row_phase_rms(c) for name, c in casa.items()}
    for name, gain in runs.items():
        ours = _akapply(ms, [cals[name]] * 2, ["K0", gain], ["nearest", "linear"])
        err = np.abs(casa[name] - ours).max() / np.abs(ours).max()
        print(f"{name}: CASA row phase rms {rms[name]:.4f} (akapply {_row_phase_rms(ours):.4f}); "
              f"max |CASA - akapply| / max |V| {err:.2g}")
        assert err < 1e-5
    assert rms["scan"] < 1.15 * rms["inf"] and rms["scanT"] < 1.15 * rms["inf"]


def test_a_k_with_its_own_reference_keeps_it(exported, tmp_path):
    """A K that carries a delay reference (a CASA K read into a table: ``delay_ref_hz``) is exported
    with it as CHAN_FREQ, so CASA's matrix is the table's (it was written at 0 Hz, another matrix)."""
    ms, cals, out, _ = exported
    k_sets = hdf5.read_term(cals["scan"], "K0")
    for s in k_sets:
        s.attrs = dict(s.attrs, delay_ref_hz=1.29e9)
    h5 = str(tmp_path / "kref.h5")
    hdf5.write_file(h5, {"K0": k_sets})
    tb = str(tmp_path / "kref.K0.tb")
    akexport(caltable=h5, jones="K0", casatable=tb)
    assert [list(f) for f in _chan_freq(tb)] == [[1.29e9]]
    back = casatable.read_table(tb)
    assert {s.attrs["delay_ref_hz"] for s in back} == {1.29e9}


def test_two_framed_gains_carry_the_k_once(constant_gains):
    """K(scan), G0 with a single solution (framed by K, and not a per-scan gain, so a G1 solved after it
    is framed too): the export frames G0 only -- CASA's chain of gains takes K(t_s, nu_ref) once."""
    import copy

    from alakazam.calibration import chain, delayframe

    ms, cals = constant_gains
    k = chain.load_term(cals["scan"], "K0")
    g = chain.load_term(cals["scan"], "G0")
    one = copy.copy(g.sets[0])
    one.time, one.jones, one.flags = one.time[:1], one.jones[:, :, :1], one.flags[:, :, :1]
    one.pol_flags = None if one.pol_flags is None else one.pol_flags[:, :, :1]
    g0 = chain.term_from_sets("G0", "G", [one])
    g1 = chain.term_from_sets("G1", "G", [copy.copy(s) for s in g.sets])
    for s in g1.sets:
        s.attrs = dict(s.attrs, preapply_chain=["K0", "G0"])
    terms = [k, g0, g1]
    assert delayframe.k_terms_for(g0, terms, 0) == [k] and delayframe.k_terms_for(g1, terms, 0) == [k]
    assert [x for x, _ in casatable.gain_frames(g0, terms)[0]] == [k]
    assert casatable.gain_frames(g1, terms) == {}


def test_the_export_says_what_goes_together(constant_gains, tmp_path, caplog):
    """Exporting a per-scan K, or a G framed by it, says to export and apply the two together (a framed G
    with a 0-Hz K, or the K alone with an unframed G, is off by 2 pi tau nu_ref)."""
    import logging

    _, cals = constant_gains
    with caplog.at_level(logging.INFO, logger="alakazam.export"):
        akexport(caltable=cals["scan"], jones="K0", casatable=str(tmp_path / "k.tb"))
        akexport(caltable=cals["scan"], jones="G0", casatable=str(tmp_path / "g.tb"))
        akexport(caltable=cals["inf"], jones="K0", casatable=str(tmp_path / "kinf.tb"))
    msgs = [r.getMessage() for r in caplog.records if r.name == "alakazam.export"]
    assert any(m.startswith("K0: a per-scan K written with CASA's delay reference")
               and "export G0 with it" in m for m in msgs), msgs
    assert any(m.startswith("G0: written in the frame of the per-scan K0") for m in msgs), msgs
    assert len(msgs) == 2                       # the K per field: nothing to say


def test_a_gain_of_another_table_framed_by_its_k(constant_gains, tmp_path, caplog):
    """A G solved in a second table with the per-scan K of the first pre-applied (the demo's fluxscaled
    G0: K0 and the bandpass of cal.h5 pre-applied) was exported unframed -- its K was not in its table
    -- while that K0 was exported at nu_ref (its own table frames its G0): CASA's applycal of the
    demo's exported chain gave 3C286 0.22 Jy for 14.9 (a review).  The solve now records the table
    of every pre-applied key (attr ``preapply_tables``) and the export frames the G by that K exactly
    where the K's own export is framed.  A K table that is gone: a warning, the G unframed."""
    import logging

    from alakazam.caltasks import akcal

    ms, cals = constant_gains
    ktab = str(tmp_path / "k.h5")
    shutil.copy(cals["scan"], ktab)
    g2 = str(tmp_path / "g2.h5")
    akcal(vis=ms, caltable=g2, field="3C147", jones=["G"], solint=["2min"], refant="C00",
          gaintable=[ktab], gainjones=["K0"])
    s0 = hdf5.read_term(g2, "G0")[0]
    assert list(s0.attrs["preapply_chain"]) == ["K0"] and list(s0.attrs["preapply_tables"]) == [ktab]
    same, other = str(tmp_path / "same.tb"), str(tmp_path / "other.tb")
    akexport(caltable=ktab, jones="G0", casatable=same)          # framed in its own table
    with caplog.at_level(logging.INFO, logger="alakazam.export"):
        akexport(caltable=g2, jones="G0", casatable=other)
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("G0: written in the frame of the per-scan K0") for m in msgs), msgs
    a, b = _rows(same), _rows(other)
    np.testing.assert_allclose(a[0], b[0])
    np.testing.assert_allclose(np.array(a[3]), np.array(b[3]), atol=1e-5)     # the same solve, framed alike
    caplog.clear()
    os.remove(ktab)
    with caplog.at_level(logging.INFO, logger="alakazam.export"):
        akexport(caltable=g2, jones="G0", casatable=str(tmp_path / "gone.tb"))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("G0: solved with K0 pre-applied" in m and "written without a per-scan K's delay frame" in m
               for m in warned), warned
    c = _rows(str(tmp_path / "gone.tb"))
    assert np.abs(np.angle(np.array(c[3]) / np.array(b[3]))).max() > 0.5     # unframed: radians off


def test_a_chain_key_named_like_the_exported_key(constant_gains, tmp_path, caplog):
    """K per scan (+ G0) in a.h5, a bandpass G0 in b.h5 with a.h5's K0 pre-applied, a G0 in c.h5 with
    both pre-applied: c's chain names 'G0' (b.h5's), which was taken for c's own G0 -- 'a per-scan gain
    solved in between' -- and c's G0 was exported unframed (CASA applycal 1.97 rad rms off akapply on
    the TARGET; the review of the diff).  Chain keys resolve by (table, key) now: c's G0 is framed as
    by a.h5's K0 (a bandpass over all scans in between does not take K's per-scan phase)."""
    import logging

    from alakazam.caltasks import akcal

    ms, cals = constant_gains
    a = str(tmp_path / "a.h5")
    shutil.copy(cals["scan"], a)
    b, c = (str(tmp_path / f"{x}.h5") for x in ("b", "c"))
    akcal(vis=ms, caltable=b, field="3C147", jones=["G"], solint=["inf"], freqint=["1ch"], refant="C00",
          gaintable=[a], gainjones=["K0"])
    akcal(vis=ms, caltable=c, field="3C147", jones=["G"], solint=["2min"], refant="C00",
          gaintable=[a, b], gainjones=["K0", "G0"])
    with caplog.at_level(logging.INFO, logger="alakazam.export"):
        akexport(caltable=c, jones="G0", casatable=str(tmp_path / "c.tb"))
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("G0: written in the frame of the per-scan K0") for m in msgs), msgs
    # c's G0 exported = its solutions times K(t_s, nu_ref) of a.h5's K0, per hand (as in its own table)
    with table(os.path.join(ms, "ANTENNA"), ack=False) as t:
        ants = [str(x) for x in t.getcol("NAME")]
    k_sets = hdf5.read_term(a, "K0")
    nu_ref = casatable.k_reference(k_sets, 0)
    n, off = _check_framed(str(tmp_path / "c.tb"), hdf5.read_term(c, "G0"), k_sets, ants, lambda sp: nu_ref)
    assert n >= 20 and off > 0.5                       # the frame moves the phases by radians


def test_a_gain_after_a_k_of_another_table_warns_that_casa_cannot_frame_it(constant_gains, tmp_path, caplog):
    """K(scan) alone in one table, a G(2 min) solved with it in another: akexport writes the K at 0 Hz (no
    gain of its table is framed by it) and the G unframed to match, so CASA's applycal of the pair misses
    the delay frame between scans -- no consistent pair exists from the two exports, and the export of
    the G says so (a review: 0.37 against 0.078 rad in CASA, silently)."""
    import logging

    from alakazam.caltasks import akcal

    ms, _ = constant_gains
    kt, gt = str(tmp_path / "k.h5"), str(tmp_path / "g.h5")
    akcal(vis=ms, caltable=kt, field="3C147", jones=["K"], solint=["scan"], refant="C00")
    akcal(vis=ms, caltable=gt, field="3C147", jones=["G"], solint=["2min"], refant="C00",
          gaintable=[kt], gainjones=["K0"])
    with caplog.at_level(logging.WARNING, logger="alakazam.export"):
        akexport(caltable=gt, jones="G0", casatable=str(tmp_path / "g.tb"))
    assert "written unframed to match it" in caplog.text and "K0" in caplog.text


def test_a_framed_t_is_said_to_be_written_as_g(constant_gains, tmp_path, caplog):
    """A T framed by a per-scan K becomes a G Jones table: the log line says so (review 55a)."""
    import logging

    from casacore.tables import table

    _, cals = constant_gains
    with caplog.at_level(logging.INFO, logger="alakazam.export"):
        akexport(caltable=cals["scanT"], jones="T0", casatable=str(tmp_path / "t.tb"))
    msgs = [r.getMessage() for r in caplog.records if r.name == "alakazam.export"]
    assert any(m.startswith("T0: written in the frame of the per-scan K0") and "written as G Jones" in m
               for m in msgs), msgs
    with table(str(tmp_path / "t.tb"), ack=False) as t:
        assert t.getkeyword("VisCal") == "G Jones"
