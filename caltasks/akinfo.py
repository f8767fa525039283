"""akinfo: summarise a solution table, or (``vis=``) a Measurement Set like CASA's listobs
(parameters: tasks_xml/akinfo.xml)."""

import os

from alakazam.errors import ParameterError
from alakazam.io.solutions import is_casa_caltable

from .task import Task


def _prepare(params):
    """caltable (solution summary) or, when caltable is '', vis (listobs); the one used must exist
    (checked before the Begin line).  caltable wins when both are set, so akshell's ``go akinfo``
    after ``go akcal`` (vis and caltable both set) summarises the table, as before."""
    vis, caltable = params["vis"], params["caltable"]
    errors = {}
    if caltable and vis:
        import logging
        logging.getLogger("alakazam.tasks").info("akinfo: caltable=%r given, so vis=%r is not summarised "
                                                 "(set caltable='' for the listobs of vis)", caltable, vis)
        vis = ""
        params = dict(params, vis="")
    if not vis and not caltable:
        errors["caltable"] = ["give caltable (an HDF5 solution table) or vis (a Measurement Set: listobs "
                              "summary); both are ''"]
    else:
        name, path = ("vis", vis) if vis else ("caltable", caltable)
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            errors[name] = [f"the {name} parameter must be a path that exists ({path!r} does not exist)"]
        elif vis:                        # a file, a CASA caltable ...: said before the Begin line
            from alakazam.core.ms_io import check_ms
            from alakazam.errors import AlakazamError

            if is_casa_caltable(path):
                errors["vis"] = [f"{path!r} is a CASA calibration table, not a Measurement Set: "
                                 f"akinfo(caltable={path!r}) summarises it"]
            else:
                try:
                    check_ms(path)
                except AlakazamError as e:
                    errors["vis"] = [str(e).split(": ", 1)[-1]]
        elif os.path.isdir(path) and not is_casa_caltable(path):
            from alakazam.core.listobs import path_kind
            from alakazam.errors import AlakazamError

            try:
                is_ms = path_kind(path) == "ms"
            except AlakazamError:
                is_ms = False
            errors["caltable"] = [f"{path!r} is a Measurement Set: akinfo(vis={path!r}) lists it (listobs)"
                                  if is_ms else f"{path!r} is a directory but neither an alakazam HDF5 "
                                  "solution table nor a CASA calibration table"]
        params = dict(params, **{name: path})
        if vis and params["fluxscale"]:
            errors["fluxscale"] = ["fluxscale=True needs caltable (a fluxscale table), not vis"]
        elif caltable and params["fluxscale"] and not errors:
            errors.update(_fluxscale_errors(path))
    if errors:
        raise ParameterError(errors, task="akinfo")
    return params


def _fluxscale_errors(path) -> dict:
    """fluxscale=True on a table that is not an alakazam table or holds no fluxscale results: said
    before the Begin line, as ``alakazam fluxscale-info`` says it (before, a traceback after Begin)."""
    from alakazam.errors import AlakazamError
    from alakazam.io import hdf5

    if is_casa_caltable(path):
        return {"fluxscale": [f"{path!r} is a CASA calibration table: it holds no fluxscale results "
                              "(fluxscale=False summarises its solutions)"]}
    try:
        rows = hdf5.read_fluxscale(path)
    except AlakazamError as e:
        return {"caltable": [str(e).removeprefix("caltable: ")]}
    if not rows:
        return {"fluxscale": [f"{path!r} has no fluxscale results (run akfluxscale / a fluxscale block); "
                              "fluxscale=False summarises its solutions"]}
    return {}


def _body(params):
    import sys

    from rich.console import Console

    con = Console() if sys.stdout.isatty() else Console(width=200)
    caltable, fluxscale, vis = params["caltable"], params["fluxscale"], params["vis"]
    if vis:
        import logging

        from alakazam.calibration import flagsafety
        from alakazam.core import columns, listobs, weightbackup
        from alakazam.core.ms import MeasurementSet

        # what an interrupted run left, said as the other tasks on the MS say it
        flagsafety.warn_interrupted(vis)
        if weightbackup.pending(vis):
            logging.getLogger("alakazam.tasks").warning(
                "%s: an apply with calwt did not finish and WEIGHT may be partly rewritten; put it back "
                "with: %s (the next apply or akflag on this MS does it too)", vis,
                weightbackup.recover_command(vis))
        columns.warn_rewritten(vis, "CORRECTED_DATA")
        with MeasurementSet.open(vis):          # the main table opened once
            summary = listobs.summarise_ms(vis)
        listobs.render(summary, con)
        return summary
    from alakazam.io import hdf5

    if fluxscale:
        from alakazam.calibration.fluxscale import format_fluxscale

        con.print(format_fluxscale(caltable))
        return {"fluxscale": hdf5.read_fluxscale(caltable)}
    con.print(hdf5.summary_table(caltable))
    groups = hdf5.summary(caltable)
    _warn_nonfinite(caltable, groups)
    return {"groups": groups}


def _warn_nonfinite(caltable, groups):
    """One warning per key with NaN/Inf solutions that are not flagged (column 'NaN unflagged')."""
    import logging

    from alakazam.io import hdf5

    per_key = {}
    for g in groups:
        n, tot = per_key.get(g["key"], (0, 0))
        per_key[g["key"]] = (n + g["nonfinite"], tot + g["n_ant"] * g["n_freq"] * g["n_time"])
    for key, (n, tot) in per_key.items():
        if n:
            logging.getLogger("alakazam.tasks").warning(hdf5.nonfinite_message(
                caltable, key, n, tot, what="are neither usable nor counted as flagged (column "
                "'NaN unflagged')"))


akinfo = Task("akinfo", _body, prepare=_prepare, keep_reads=True)
