"""akfluxscale: bootstrap the flux scale (parameters: tasks_xml/akfluxscale.xml)."""

from alakazam.config import fluxscale_config_from_dict

from .task import Task


def build_config(params):
    d = akfluxscale.yaml_dict(params)
    if not d.get("transfer_table"):
        d.pop("transfer_table", None)
    return fluxscale_config_from_dict(d, where="akfluxscale", names=akfluxscale.names_for_messages())


def _body(cfg):
    from alakazam.calibration.fluxscale import run_fluxscale

    return run_fluxscale(cfg)


akfluxscale = Task("akfluxscale", _body, prepare=build_config)
