"""akexport: one key of an HDF5 solution table -> a CASA caltable (parameters: tasks_xml/akexport.xml;
engine: alakazam.io.casatable)."""

from alakazam.errors import ParameterError

from .task import Task


def _prepare(params):
    errors = {}
    if not str(params["jones"]).strip():
        errors["jones"] = ["is required (the key to export, e.g. G0)"]
    if not str(params["casatable"]).strip():
        errors["casatable"] = ["is required (the output CASA table)"]
    if errors:
        raise ParameterError(errors, task="akexport")
    return params


def _body(params):
    from alakazam.io import casatable

    return casatable.export(params["caltable"], params["jones"], params["casatable"], ms=params["vis"],
                            crossphase=params["crossphase"])


akexport = Task("akexport", _body, prepare=_prepare)
