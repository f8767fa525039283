"""akplot: PNG plots of a solution table (parameters: tasks_xml/akplot.xml; engine: alakazam.plots)."""

from alakazam.errors import ParameterError

from .task import Task


def _prepare(params):
    """Every parameter that cannot work on the table (unknown keys, a field or SPW without solutions,
    an outdir that is a file), together, before the Begin line."""
    from alakazam.plots import check_params

    jones = [j for j in (params["jones"] or []) if j]
    errors = check_params(params["caltable"], params["outdir"], jones=jones, field=params["field"],
                          spw=params["spw"], iteraxis=params["iteraxis"]) if params["caltable"] else {}
    if errors:
        raise ParameterError(errors, task="akplot")
    return dict(params, jones=jones)


def _body(p):
    from alakazam.plots import plot_table

    files = plot_table(p["caltable"], p["outdir"], jones=p["jones"], field=p["field"], spw=p["spw"],
                       iteraxis=p["iteraxis"])
    return {"files": files, "outdir": p["outdir"]}


akplot = Task("akplot", _body, prepare=_prepare)
