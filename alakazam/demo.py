"""``alakazam demo``: simulate a small MS, run solve -> fluxscale -> apply, print recovered vs true."""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np

TWO_PI_NS = 2 * np.pi * 1e-9


@contextlib.contextmanager
def details_to(path):
    """INFO and above go to the file ``path``; console handlers show warnings and errors only (a
    ``--log`` file handler is left as it is).  Restored on exit."""
    root = logging.getLogger()
    from .tasklog import file_handler

    fh = file_handler(path, mode="w")
    saved = [(h, h.level) for h in root.handlers]
    saved_root = root.level
    for h in root.handlers:
        if not isinstance(h, logging.FileHandler):
            h.setLevel(max(h.level, logging.WARNING))
    root.setLevel(logging.INFO)
    root.addHandler(fh)
    try:
        yield path
    finally:
        root.removeHandler(fh)
        fh.close()
        root.setLevel(saved_root)
        for h, lev in saved:
            h.setLevel(lev)


def run_demo(directory="alakazam_demo", feed="linear", backend="numba", quiet=False, overwrite=False):
    """Simulate ``directory``/demo.ms, solve the delays and the bandpass into cal.h5 and the gains into
    gains.h5 (CASA's recipe: the bandpass with a phase-only G per integration pre-applied, the gains
    with K and the bandpass but not that phase-only G; calibration/driftcheck.py), fluxscale the gains
    into cal_scaled.h5, apply; print the recovered-vs-true summary.  The engine's log lines go to
    ``<directory>/demo.log`` (the console shows the summary, warnings and errors).

    An existing demo.ms, cal.h5, gains.h5 or cal_scaled.h5 is replaced only with ``overwrite`` (and
    demo.ms only when alakazam simulate wrote it, the .h5 only when they are alakazam solution files);
    otherwise nothing is written and an AlakazamError lists them.
    """
    from .core.outputs import check_replace_simulated
    from .errors import AlakazamError
    from .io import hdf5

    from .solvers import BACKENDS

    if backend not in BACKENDS:         # (before anything is written: it was found by the solve block)
        raise AlakazamError(f"demo: --backend {backend!r} is not a solver backend; expected one of "
                            f"{', '.join(BACKENDS)}")
    ms, cal, gains, scaled = (os.path.join(directory, n)
                              for n in ("demo.ms", "cal.h5", "gains.h5", "cal_scaled.h5"))
    present = [p for p in (ms, cal, gains, scaled) if os.path.lexists(p)]
    if present and not overwrite:
        raise AlakazamError(f"demo: {', '.join(present)} already exist(s); pass --overwrite "
                            "(overwrite=True) to replace them, or choose another --dir")
    check_replace_simulated(ms, overwrite)
    for p in (cal, gains, scaled):
        if os.path.lexists(p):
            hdf5._check_file(p)         # only an alakazam solution file is ever removed
    for p in (cal, gains, scaled):
        if os.path.lexists(p):
            os.remove(p)
    os.makedirs(directory, exist_ok=True)
    logfile = os.path.join(directory, "demo.log")
    with details_to(logfile):
        return _run_demo(directory, feed, backend, quiet, logfile, overwrite)


def _run_demo(directory, feed, backend, quiet, logfile, overwrite):
    from rich.console import Console
    from rich.table import Table

    from .calibration.apply import run_apply
    from .calibration.fluxscale import run_fluxscale
    from .config import (apply_config_from_dict, fluxscale_config_from_dict, solve_config_from_dict)
    from .core import ms_io
    from .flow import run_solve
    from .io import hdf5
    from .sim import simulate_ms

    con = Console(quiet=quiet)
    ms = os.path.join(directory, "demo.ms")
    cal = os.path.join(directory, "cal.h5")
    gains = os.path.join(directory, "gains.h5")
    scaled = os.path.join(directory, "cal_scaled.h5")
    t0 = time.perf_counter()
    truth = simulate_ms(ms, feed=feed, noise=0.05, seed=1, leakage=False, n_chan=(32, 16),
                        overwrite=overwrite)
    # soft_wrap: rich breaks a line at the console width, also inside a path ("de\nmo.log"), which then
    # cannot be copied; the terminal wraps it instead
    con.print(f"[bold]simulated[/] {ms}: {len(truth.ant_names)} antennas, {feed} feeds, "
              f"fields {', '.join(truth.field_names)}", soft_wrap=True)
    # CASA's recipe: K per scan, a phase-only G per integration pre-applied to the bandpass (the gains
    # drift during its hour: calibration/driftcheck.py), then the gains with K0 and the bandpass G1
    run_solve(solve_config_from_dict(dict(
        ms=ms, output=cal, ref_ant=truth.ant_names[0], jones=["K", "G", "G"], field=["3C286"],
        time_interval=["scan", "int", "inf"], freq_interval=["full", "full", "1MHz"],
        phase_only=[False, True, False], apply_parang=True, solver_backend=backend)))
    run_solve(solve_config_from_dict(dict(
        ms=ms, output=gains, ref_ant=truth.ant_names[0], jones=["G"], field=["3C286", "3C147"],
        time_interval=["2min"], freq_interval=["full"], apply_parang=True, solver_backend=backend,
        external_preapply=dict(tables=[cal, cal], jones=["K0", "G1"]))))
    fs = run_fluxscale(fluxscale_config_from_dict(dict(
        reference_table=gains, reference_field=["3C286"], transfer_field=["3C147"], output=scaled,
        jones_type="G0")))
    res = run_apply(apply_config_from_dict(dict(
        ms=ms, jones=["K0", "G1", "G0"], tables=[cal, cal, scaled],
        time_interp=["nearest", "nearest", "linear"],
        # calflag (CASA applycal's default; the demo's own MS): the target samples next to the dead
        # antenna's flagged solutions are flagged, not left uncorrected in CORRECTED_DATA.  Stokes I:
        # the corrected data stay in the feed frame (rotating them needs KC and CP; parang_check)
        apply_parang=False, propagate_flags=True)))
    elapsed = time.perf_counter() - t0

    # ---- recovered vs true
    tab = Table(title=f"alakazam demo: recovered vs true ({elapsed:.1f} s total)")
    for c in ("quantity", "recovered", "true", "error"):
        tab.add_column(c)
    ref = truth.tau[0]
    errs = []
    for s in hdf5.read_term(cal, "K0"):
        if s.field_name == "3C286":
            errs.append(s.delay[:, 0, 0] - (truth.tau - ref))
    e = np.concatenate(errs)
    tab.add_row("K delay rms error (3C286 scans)", "", "", f"{1e3 * np.sqrt(np.nanmean(e ** 2)):.1f} ps")
    for fname, S in (("3C147", truth.flux_true["3C147"][0]), ("TARGET", truth.flux_true["TARGET"][0]),
                     ("3C286", truth.flux_true["3C286"][0])):
        meta = ms_io.read_meta(ms)
        fid = ms_io.resolve_fields(meta, [fname])[0]
        vals = []
        for ddid in meta.spws:
            ch = ms_io.read_rows(ms, ddid, [fid], data_col="CORRECTED_DATA", model_col=None, meta=meta)
            ok = ~ch.flag[..., 0] & ~ch.flag[..., 3]
            vals.append((0.5 * (ch.data[..., 0] + ch.data[..., 3]).real)[ok])
        v = np.concatenate(vals)
        tab.add_row(f"{fname} corrected Stokes I (Jy)", f"{v.mean():.4f}", f"{S:.4f}",
                    f"{100 * (v.mean() / S - 1):+.2f}%")
    for fid, rec in fs.items():
        if not (isinstance(rec, dict) and "fieldName" in rec):
            continue
        for spw in (k for k in rec if k.isdigit()):
            f = float(rec[spw]["fluxd"][0])
            S = truth.flux_true[rec["fieldName"]][0]
            tab.add_row(f"fluxscale {rec['fieldName']} flux, SPW {spw} (Jy)", f"{f:.4f}", f"{S:.4f}",
                        f"{100 * (f / S - 1):+.2f}%")
    con.print(tab)
    con.print(f"solutions: {cal}, {gains} (fluxscaled: {scaled}); corrected data in {ms}:CORRECTED_DATA; "
              f"{res['flagged_by_solution']} samples flagged for a flagged solution (calflag; "
              f"the simulated dead antenna's scan); log: {logfile}", soft_wrap=True)
    return tab
