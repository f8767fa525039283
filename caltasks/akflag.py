"""akflag: flag a Measurement Set (parameters: tasks_xml/akflag.xml; engine: alakazam.flagging)."""

from alakazam.errors import ParameterError
from alakazam.flagging.config import flag_config_from_dict

from .task import Task


def build_config(params):
    """akflag parameters -> FlagConfig through the same builder as the YAML ``flag`` block."""
    try:
        return flag_config_from_dict(akflag.yaml_dict(params), where="", names=akflag.names_for_messages())
    except ParameterError as e:
        raise ParameterError(e.errors, task="akflag") from None


def _body(cfg):
    from alakazam.flagging import run_flag

    return run_flag(cfg)


akflag = Task("akflag", _body, prepare=build_config)
