"""An apply with parallactic angle on linear feeds and no cross-hand phase (CP) term: the warning, and
the physics it states (calibration/parang_check.cross_hand_phase_note).

Gains solved per hand leave the reference antenna's X-Y phase in the corrected cross hands; the
parallactic-angle rotation of the apply mixes the cross hands into XX and YY for linear feeds.  So the
corrected XX (and YY) of a polarised source depend on which antenna was the reference, while XX + YY
(Stokes I: the rotation keeps the trace) does not.  Pinned here against two reference antennas, with
the simulation's per-antenna X-Y phases (each feed's own constant phase).  Session 48's review found
no warning given."""

import logging

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms

NOTE = "no cross-hand phase (CP)"


def _solve(ms, out, ref, jones=("G",)):
    run_solve(solve_config_from_dict(dict(
        ms=ms, output=out, ref_ant=ref, apply_parang=True, jones=list(jones), field=["3C286"],
        time_interval=["int"] + ["inf"] * (len(jones) - 1), freq_interval=["full"] * len(jones), quiet=True,
        min_bl_per_ant=3)))


def _apply(ms, cal, col, keys=("G0",), parang=True):
    return run_apply(apply_config_from_dict(dict(
        ms=ms, jones=list(keys), tables=[cal] * len(keys), output_col=col, apply_parang=parang,
        target_field="3C286")))


def _hands(ms, col):
    with table(f"{ms}::FIELD", ack=False) as t:
        fid = list(t.getcol("NAME")).index("3C286")
    with table(ms, ack=False) as t:
        sel = t.getcol("FIELD_ID") == fid
        d = t.getcol(col)[sel]
        f = t.getcol("FLAG")[sel]
    d = np.where(f, np.nan, d)
    return d[..., 0], d[..., 3]


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pnx")
    ms = str(tmp / "l.ms")
    simulate_ms(ms, feed="linear", n_ant=5, n_ant_extra=0, n_chan=(4,), delays=False, bandpass=False,
                time_gains=True, leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0,
                duration_h=2.0, noise=0.001, seed=4)
    return ms, tmp


def test_corrected_parallel_hands_of_a_polarised_source_depend_on_the_reference(linear, caplog):
    ms, tmp = linear
    caplog.set_level(logging.WARNING, logger="alakazam")
    for ref in ("C00", "C01"):
        _solve(ms, str(tmp / f"{ref}.h5"), ref)
        _apply(ms, str(tmp / f"{ref}.h5"), f"CORR_{ref}")
    notes = [r.getMessage() for r in caplog.records if NOTE in r.getMessage()]
    assert len(notes) == 2 and "SPW 0" in notes[0], notes
    xx0, yy0 = _hands(ms, "CORR_C00")
    xx1, yy1 = _hands(ms, "CORR_C01")
    scale = np.nanmedian(np.abs(xx0 + yy0))
    # Stokes I agrees between the two references to the noise (0.001 per sample, 5 antennas)
    assert np.nanmax(np.abs((xx0 + yy0) - (xx1 + yy1))) < 0.01 * scale
    # XX alone does not: 3C286's U (and Q) enter through the cross hands' reference X-Y phase
    assert np.nanmax(np.abs(xx0 - xx1)) > 0.03 * scale


def test_no_note_without_parang_or_with_a_cp_term(linear, caplog):
    ms, tmp = linear
    caplog.set_level(logging.WARNING, logger="alakazam")
    _solve(ms, str(tmp / "g.h5"), "C00")
    _apply(ms, str(tmp / "g.h5"), "CORR_NOPA", parang=False)
    assert not [r for r in caplog.records if NOTE in r.getMessage()]
    _solve(ms, str(tmp / "cp.h5"), "C00", jones=("G", "KC", "CP"))
    _apply(ms, str(tmp / "cp.h5"), "CORR_CP", keys=("G0", "KC0", "CP0"))
    assert not [r for r in caplog.records if NOTE in r.getMessage()]


def test_no_note_for_circular_feeds(tmp_path, caplog):
    ms = str(tmp_path / "c.ms")
    simulate_ms(ms, feed="circular", n_ant=4, n_ant_extra=0, n_chan=(2,), delays=False, bandpass=False,
                time_gains=False, leakage=False, crosshand=False, dead_ant=False, duration_h=1.0, seed=1)
    caplog.set_level(logging.WARNING, logger="alakazam")
    _solve(ms, str(tmp_path / "c.h5"), "C00")
    _apply(ms, str(tmp_path / "c.h5"), "CORR_C")
    assert not [r for r in caplog.records if NOTE in r.getMessage()]
