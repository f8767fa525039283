"""akfluxscale: bootstrap the flux scale (parameters: tasks_xml/akfluxscale.xml)."""

import os

from alakazam.config import fluxscale_config_from_dict
from alakazam.errors import ParameterError

from .task import Task


def _is_hdf5(path):
    """(anything else -- missing, a directory, not HDF5 -- is reported by the engine when it runs)"""
    import h5py

    return os.path.isfile(path) and h5py.is_hdf5(path)


def build_config(params):
    d = akfluxscale.yaml_dict(params)
    if not d.get("transfer_table"):
        d.pop("transfer_table", None)
    names = akfluxscale.names_for_messages()
    cfg = fluxscale_config_from_dict(d, where="akfluxscale", names=names)
    if _is_hdf5(cfg.reference_table):            # the tables' contents: every bad part together
        from alakazam.calibration.fluxscale import check_inputs

        errors = check_inputs(cfg)
        if errors:
            raise ParameterError({f"akfluxscale.{names.get(k, k)}": v for k, v in errors.items()},
                                 task="akfluxscale")
    return cfg


def _body(cfg):
    from alakazam.calibration.fluxscale import run_fluxscale

    return run_fluxscale(cfg)


akfluxscale = Task("akfluxscale", _body, prepare=build_config)
