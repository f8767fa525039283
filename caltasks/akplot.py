"""akplot: PNG plots of a solution table (parameters: tasks_xml/akplot.xml; engine: alakazam.plots)."""

from .task import Task


def _body(caltable, jones, field, spw, iteraxis, outdir):
    from alakazam.plots import plot_table

    files = plot_table(caltable, outdir, jones=[j for j in (jones or []) if j], field=field, spw=spw,
                       iteraxis=iteraxis)
    return {"files": files, "outdir": outdir}


akplot = Task("akplot", _body)
