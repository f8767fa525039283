"""akflagmanager: list / save / restore / delete flag versions (parameters: tasks_xml/akflagmanager.xml;
engine: alakazam.core.flagversions)."""

from alakazam.errors import ParameterError

from .task import Task


def _prepare(params):
    mode, name = params["mode"], params["versionname"].strip()
    if mode in ("restore", "delete") and not name:
        raise ParameterError({"versionname": [f"is required for mode={mode!r} (see mode='list')"]},
                             task="akflagmanager")
    return dict(params, versionname=name)


def _print_list(vis, versions):
    import sys

    from rich.console import Console
    from rich.table import Table

    con = Console() if sys.stdout.isatty() else Console(width=160)
    tb = Table(title=f"flag versions of {vis}", title_justify="left")
    for c in ("name", "saved (UTC)", "comment", "format"):
        tb.add_column(c)
    for v in versions:           # CASA's flagmanager restores tables, not the older .npz files
        tb.add_row(v["name"], v["time"], v["comment"],
                   "table (CASA too)" if v.get("format") == "table" else ".npz (alakazam only)")
    con.print(tb if versions else f"{vis}: no flag versions saved")


def _body(p):
    from alakazam.core import flagversions

    vis, mode, name = p["vis"], p["mode"], p["versionname"]
    if mode == "list":
        versions = flagversions.list_versions(vis)
        _print_list(vis, versions)
        return {"versions": versions}
    if mode == "save":
        saved = flagversions.save(vis, task="flagmanager", comment=p["comment"] or "akflagmanager save",
                                  name=name or None)
        return {"saved": saved}
    if mode == "restore":
        from alakazam.calibration.flagsafety import clear_marker

        out = {"restored": flagversions.restore(vis, name, merge=p["merge"]), "merge": p["merge"]}
        clear_marker(vis, name)        # an interrupted run's "FLAG writes in progress" marker
        return out
    return {"deleted": flagversions.delete(vis, name)}


akflagmanager = Task("akflagmanager", _body, prepare=_prepare)
