"""akflagmanager: list / save / restore / delete flag versions (parameters: tasks_xml/akflagmanager.xml;
engine: alakazam.core.flagversions)."""

from alakazam.errors import ParameterError

from .task import Task


def _prepare(params):
    """vis must be a Measurement Set (also for mode='list', which said 'no flag versions saved' of any
    path); versionname is required for restore and delete and must name a saved version (save: a new
    one) -- all reported together, before the Begin line."""
    from alakazam.core import flagversions, ms_io
    from alakazam.errors import AlakazamError

    mode, name, vis = params["mode"], params["versionname"].strip(), params["vis"]
    errors = {}
    try:
        ms_io.check_ms(vis)
    except AlakazamError as e:
        errors["vis"] = [str(e).split(": ", 1)[-1]]
    if mode in ("restore", "delete") and not name:
        errors["versionname"] = [f"is required for mode={mode!r} (see mode='list')"]
    elif name and mode != "list" and "vis" not in errors:
        saved = [v["name"] for v in flagversions.list_versions(vis)]
        if mode in ("restore", "delete") and name not in saved:
            errors["versionname"] = [f"flag version {name!r} not found in {flagversions.versions_dir(vis)}; "
                                     f"saved: {', '.join(saved) or 'none'}"]
        elif mode == "restore":
            try:                # a version of another MS: before the current flags are saved
                flagversions.check_matches(vis, name)
            except AlakazamError as e:
                errors["versionname"] = [str(e).split(": ", 1)[-1]]
        elif mode == "save" and flagversions.name_error(name):
            errors["versionname"] = [flagversions.name_error(name)]
        elif mode == "save" and name in saved:
            errors["versionname"] = [f"{name!r} already exists in {flagversions.versions_dir(vis)}; delete "
                                     "it first or choose another name"]
    # a value the mode does not use is refused, not dropped: akflagmanager(vis, versionname='x') without
    # mode='restore' listed the versions and restored nothing (a review)
    uses = {"versionname": ("save", "restore", "delete"), "comment": ("save",), "merge": ("restore",)}
    given = {"versionname": name, "comment": str(params["comment"] or "").strip(),
             "merge": "" if params["merge"] == "replace" else params["merge"]}
    for key, modes in uses.items():
        if given[key] and mode not in modes and key not in errors:
            errors[key] = [f"{given[key]!r} is not used by mode={mode!r} (only by mode "
                           f"{' / '.join(repr(m) for m in modes)})"]
    if errors:
        raise ParameterError(errors, task="akflagmanager")
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

    from alakazam.calibration import flagsafety

    vis, mode, name = p["vis"], p["mode"], p["versionname"]
    # an interrupted restore / akflag / apply is said (a restore that ends it says so below instead)
    order = flagversions.saved_order(vis) if mode == "restore" else None
    ends = (lambda m: flagsafety.restore_resolves(m, name, p["merge"], order)) if mode == "restore" else \
        (lambda m: m[0] == name) if mode == "delete" else None      # (delete: its marker goes with it)
    flagsafety.warn_interrupted(vis, skip=ends)
    if mode == "list":
        versions = flagversions.list_versions(vis)
        _print_list(vis, versions)
        return {"versions": versions}
    from alakazam.core import locks

    # one writer of the MS at a time: a version is not saved, restored or deleted while another run
    # writes FLAG (a delete took a running akflag's backup and its in-progress marker: a review)
    # (a save only reads the MS: on a read-only MS it runs without the lock, core/locks.writer_lock)
    with locks.writer_lock(vis, "ms", reads_only=mode == "save"):
        return _write_body(p, ends)


def _write_body(p, ends):
    from alakazam.core import flagversions

    from alakazam.calibration import flagsafety

    vis, mode, name = p["vis"], p["mode"], p["versionname"]
    if mode == "save":
        saved = flagversions.save(vis, task="flagmanager", comment=p["comment"] or "akflagmanager save",
                                  name=name or None)
        return {"saved": saved}
    if mode == "restore":
        import logging

        from alakazam.calibration.flagsafety import clear_marker

        # restore writes FLAG: the flags it replaces are saved first, as before every FLAG write, and a
        # marker names both versions until FLAG is written (a kill -9 is told by the next task)
        def save():
            return flagversions.save(vis, task="flagmanager", comment=f"akflagmanager: FLAG before restoring "
                                     f"{name} (merge={p['merge']})")

        ended = [m for m in flagsafety.interrupted(vis) if ends(m)]
        with flagsafety.restore_marked(vis, name, p["merge"], save) as backup:
            logging.getLogger("alakazam.tasks").info(
                "akflagmanager: saved the current flags as %s before restoring %s (undo: "
                "akflagmanager(vis=%r, mode='restore', versionname=%r))", backup, name, vis, backup)
            flagversions.restore(vis, name, merge=p["merge"])
        out = {"restored": name, "merge": p["merge"], "backup": backup}
        for version, restoring, _ in ended:     # the interrupted runs this restore ends (their markers)
            clear_marker(vis, version)
            logging.getLogger("alakazam.tasks").info(
                "akflagmanager: %s the interrupted %s", "finished" if restoring == name and version != name
                else "undid", f"restore of {restoring}" if restoring else version.split("_")[0])
        if p["merge"] == "replace":     # an interrupted run's "FLAG writes in progress" marker (undone;
            clear_marker(vis, name)     # 'or' / 'and' keep its writes: the marker stays, a review)
        return out
    from alakazam.calibration.flagsafety import clear_marker

    import logging

    tlog = logging.getLogger("alakazam.tasks")
    out = {"deleted": flagversions.delete(vis, name)}
    tlog.info("akflagmanager: deleted flag version %s of %s", name, vis)
    for version, restoring, merge in flagsafety.interrupted(vis):
        if version != name:
            continue
        if restoring:           # the undo of an interrupted restore is gone: say so once
            tlog.warning(
                "akflagmanager: deleted %s, the flags saved before the interrupted restore of %s; FLAG stays "
                "partly restored until akflagmanager(vis=%r, mode='restore', versionname=%r, merge=%r) is "
                "run again", name, restoring, vis, restoring, merge)
        else:                   # the only undo of an interrupted akflag / apply is gone (a review)
            tlog.warning(
                "akflagmanager: deleted %s, the flags saved before an interrupted %s that left FLAG partly "
                "changed: FLAG stays as that run left it, and no saved version holds it as it was before "
                "(the warning about the interrupted run ends here)", name, version.split("_")[0])
    clear_marker(vis, name)            # an interrupted run's marker names a version that is gone
    return out


akflagmanager = Task("akflagmanager", _body, prepare=_prepare)
