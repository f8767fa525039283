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


class _Akflag(Task):
    def validate(self, params, exists=None):
        """The XML checks; flagdata's modes akflag lacks (antint, list) say what to use instead."""
        from alakazam.flagging.config import UNSUPPORTED_MODES, unsupported_mode_message

        try:
            return super().validate(params, exists)
        except ParameterError as e:
            m = params.get("mode")
            if "mode" in e.errors and isinstance(m, str) and m.strip().lower() in UNSUPPORTED_MODES:
                errors = dict(e.errors, mode=[unsupported_mode_message(m)])
                raise ParameterError(errors, task=self.name) from None
            raise


akflag = _Akflag("akflag", _body, prepare=build_config)
