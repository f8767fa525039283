"""A term applied beside another than the one it was solved with (review 58b F4: K and bandpass re-solved,
applied with the old per-scan gains: TARGET I -45%, nothing said): every solved term records its identity
and those of the terms pre-applied to it; akapply and a solve's external pre-apply warn when another term
takes the place of one of them (alakazam/calibration/chainid.py)."""

import logging
import shutil
from pathlib import Path

import h5py
import pytest

from alakazam.calibration.apply import run_apply
from alakazam.calibration.fluxscale import run_fluxscale
from alakazam.config import apply_config_from_dict, fluxscale_config_from_dict, solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

WARN = "pre-applied, but is given with"
NEW_ATTRS = ("term_id", "term_written", "preapply_ids", "preapply_written", "preapply_roles")


def _bandpass(ms, out, spw=""):
    """K, phase-only G, bandpass G: K0, G0 (p), G1 (bandpass) in ``out``."""
    cfg = dict(ms=ms, output=out, ref_ant="C00", jones=["K", "G", "G"], field=["3C286"],
               time_interval=["scan", "int", "inf"], freq_interval=["full", "full", "1ch"],
               phase_only=[False, True, False], apply_parang=True)
    if spw:
        cfg["spw"] = spw
    return run_solve(solve_config_from_dict(cfg))


def _gains(ms, out, cal):
    """Per-scan G on both calibrators with K0 and the bandpass G1 of ``cal`` pre-applied, then fluxscaled
    into ``<out>_s.h5``; returns the scaled table."""
    run_solve(solve_config_from_dict(dict(
        ms=ms, output=out, ref_ant="C00", jones=["G"], field=["3C286", "3C147"], time_interval=["scan"],
        apply_parang=True, external_preapply=dict(tables=[cal, cal], jones=["K0", "G1"]))))
    scaled = out[:-3] + "_s.h5"
    run_fluxscale(fluxscale_config_from_dict(dict(
        reference_table=out, reference_field=["3C286"], transfer_field=["3C147"], output=scaled,
        jones_type="G0")))
    return scaled


def _apply(ms, cal, gains):
    return run_apply(apply_config_from_dict(dict(
        ms=ms, jones=["K0", "G1", "G0"], tables=[cal, cal, gains],
        time_interp=["nearest", "nearest", "linear"], target_field=["TARGET"], apply_parang=True)))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain_identity")
    ms = str(d / "sim.ms")
    simulate_ms(ms, n_ant=6, n_chan=(16,), duration_h=0.5, int_s=60.0, scan_len_s=300.0, feed="circular",
                noise=0.05, seed=5, leakage=False, dead_ant=False)
    cal, g = str(d / "cal.h5"), str(d / "g.h5")
    _bandpass(ms, cal)
    gs = _gains(ms, g, cal)
    return d, ms, cal, g, gs


def _chain_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and WARN in r.getMessage()]


def test_standard_recipe_records_identities_and_does_not_warn(recipe, caplog):
    d, ms, cal, g, gs = recipe
    k0, g0p, bp = (hdf5.read_term(cal, k) for k in ("K0", "G0", "G1"))
    ids = {k: {s.attrs["term_id"] for s in sets} for k, sets in (("K0", k0), ("G0", g0p), ("G1", bp))}
    assert all(len(v) == 1 for v in ids.values()) and len(set().union(*ids.values())) == 3
    # the bandpass records the K0 and phase-only G0 of its own solve
    assert list(bp[0].attrs["preapply_chain"]) == ["K0", "G0"]
    assert list(bp[0].attrs["preapply_ids"]) == [next(iter(ids["K0"])), next(iter(ids["G0"]))]
    gsets, ssets = hdf5.read_term(g, "G0"), hdf5.read_term(gs, "G0")
    want = [next(iter(ids["K0"])), next(iter(ids["G1"]))]
    assert [list(s.attrs["preapply_ids"]) for s in gsets] == [want] * len(gsets)
    # akfluxscale's G is the same solution rescaled: the same identity
    assert {s.attrs["term_id"] for s in ssets} == {s.attrs["term_id"] for s in gsets}
    caplog.set_level(logging.WARNING)
    res = _apply(ms, cal, gs)
    # the phase-only G0 of cal.h5 (pre-applied to the bandpass, left out here) is not the G0 of g_s.h5
    assert res["chain_warnings"] == [] and _chain_warnings(caplog) == []


_CAL2_BLOCK = """  - ms: sim.ms
    output: cal2.h5
    ref_ant: C00
    apply_parang: true
    jones: [K, G, G]
    field: [3C286]
    spw: '0:0~9'
    time_interval: [scan, int, inf]
    freq_interval: [full, full, 1MHz]
    phase_only: [false, true, false]
fluxscale:
"""


@pytest.mark.parametrize("resolved", [False, True], ids=["as_given", "bandpass_resolved"])
def test_yaml_recipe(recipe, tmp_path, capfd, resolved):
    """examples/fluxscale.yaml through the YAML runner: nothing said; with a block re-solving K and the
    bandpass into cal2.h5 and the apply taking them from there (the gains solved with cal.h5's): said."""
    from alakazam.cli import main

    _, ms, *_ = recipe
    shutil.copytree(ms, tmp_path / "sim.ms")
    text = (Path(__file__).parent.parent / "examples" / "fluxscale.yaml").read_text()
    if resolved:
        text = text.replace("fluxscale:\n", _CAL2_BLOCK, 1).replace(
            "tables: [cal.h5, cal.h5, cal_scaled.h5]", "tables: [cal2.h5, cal2.h5, cal_scaled.h5]")
        assert "cal2.h5, cal2.h5" in text
    (tmp_path / "run.yaml").write_text(text)
    capfd.readouterr()
    assert main(["--quiet", "run", str(tmp_path / "run.yaml")]) == 0
    said = " ".join("".join(capfd.readouterr()).split())      # (the console wraps lines)
    assert "preapply_ids" in hdf5.read_term(str(tmp_path / "cal_scaled.h5"), "G0")[0].attrs
    if resolved:
        assert said.count(WARN) == 2
        assert f"withK0of{tmp_path / 'cal.h5'}" in said.replace(" ", "")     # (paths wrap mid-word too)
    else:
        assert WARN not in said


def test_resolved_into_new_table_warns(recipe, caplog):
    d, ms, cal, g, gs = recipe
    cal2 = str(d / "cal2.h5")
    _bandpass(ms, cal2, spw="0:0~11")
    caplog.set_level(logging.WARNING)
    res = _apply(ms, cal2, gs)
    msgs = res["chain_warnings"]
    assert len(msgs) == 2, msgs             # K0 and the bandpass G1, each once
    for key, m in zip(("K0", "G1"), msgs):
        assert m.startswith(f"G0 of {gs} was solved with {key} of {cal} ")
        assert f"{key} of {cal2}" in m and "Re-solve G0" in m
    assert _chain_warnings(caplog) == msgs


def test_resolved_in_place_warns(recipe, caplog):
    d, ms, cal, g, gs = recipe
    calw = str(d / "calw.h5")
    _bandpass(ms, calw)
    gws = _gains(ms, str(d / "gw.h5"), calw)
    caplog.set_level(logging.WARNING)
    assert _apply(ms, calw, gws)["chain_warnings"] == []
    _bandpass(ms, calw, spw="0:2~13")      # the same table overwritten
    caplog.clear()
    res = _apply(ms, calw, gws)
    assert len(res["chain_warnings"]) == 2
    assert all(f"of {calw} was re-solved since" in m for m in res["chain_warnings"])
    assert len(_chain_warnings(caplog)) == 2


def _strip_identities(path):
    with h5py.File(path, "r+") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "jones" in obj:
                for a in NEW_ATTRS:
                    if a in obj.attrs:
                        del obj.attrs[a]
        f.visititems(visit)


def test_tables_without_identities_are_not_checked(recipe, tmp_path, caplog):
    d, ms, cal, g, gs = recipe
    cal2 = str(d / "cal_old.h5")
    _bandpass(ms, cal2, spw="0:0~11")
    old_cal2, old_gs = str(tmp_path / "cal2.h5"), str(tmp_path / "gs.h5")
    shutil.copy(cal2, old_cal2)
    shutil.copy(gs, old_gs)
    for p in (old_cal2, old_gs):
        _strip_identities(p)
    caplog.set_level(logging.WARNING)
    assert _apply(ms, old_cal2, old_gs)["chain_warnings"] == []
    # only the gains stripped (a table of an older alakazam): not checked either
    shutil.copy(cal2, old_cal2)
    assert _apply(ms, old_cal2, old_gs)["chain_warnings"] == []
    assert _chain_warnings(caplog) == []


def test_solve_external_preapply_warns(recipe, caplog):
    from alakazam.caltasks import akcal

    d, ms, cal, g, gs = recipe
    cal3 = str(d / "cal3.h5")
    _bandpass(ms, cal3, spw="0:1~12")
    caplog.set_level(logging.WARNING)
    out = akcal(vis=ms, caltable=str(d / "p.h5"), field="3C286", jones=["G"], calmode=["p"], solint=["int"],
                refant="C00", parang=True, gaintable=[cal3, cal3, gs], gainjones=["K0", "G1", "G0"])
    msgs = out["chain_warnings"]
    assert len(msgs) == 2 and all(m.startswith(f"G0 of {gs} was solved with ") for m in msgs)
    assert _chain_warnings(caplog) == msgs
    # the same solve with the terms G0 was solved with: nothing said
    caplog.clear()
    out = akcal(vis=ms, caltable=str(d / "p.h5"), field="3C286", jones=["G"], calmode=["p"], solint=["int"],
                refant="C00", parang=True, gaintable=[cal, cal, gs], gainjones=["K0", "G1", "G0"])
    assert out["chain_warnings"] == [] and _chain_warnings(caplog) == []
