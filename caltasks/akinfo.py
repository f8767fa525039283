"""akinfo: summarise a solution table (parameters: tasks_xml/akinfo.xml)."""

from .task import Task


def _body(caltable, fluxscale):
    import sys

    from rich.console import Console

    from alakazam.io import hdf5

    con = Console() if sys.stdout.isatty() else Console(width=200)
    if fluxscale:
        from alakazam.calibration.fluxscale import format_fluxscale

        con.print(format_fluxscale(caltable))
        return {"fluxscale": hdf5.read_fluxscale(caltable)}
    con.print(hdf5.summary_table(caltable))
    return {"groups": hdf5.summary(caltable)}


akinfo = Task("akinfo", _body)
