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


class _FlagTask(Task):
    def validate(self, params):
        """The XML checks, then the engine's (value ranges, clipminmax, selections against the MS) on the
        parameters the XML did not already reject: every bad parameter is reported in one error."""
        try:
            return super().validate(params)
        except ParameterError as e:
            errors = dict(e.errors)
        raw = {p.name: (params[p.name] if p.name not in errors else p.default) for p in self.spec.params}
        if "vis" in errors:
            raw["vis"] = ""
        try:
            build_config(raw)
        except ParameterError as e:
            for k, v in e.errors.items():
                if k not in errors and not (k == "vis" and "vis" in e.errors and not raw["vis"]):
                    errors[k] = v
        raise ParameterError(errors, task=self.name)


def _body(cfg):
    from alakazam.flagging import run_flag

    return run_flag(cfg)


akflag = _FlagTask("akflag", _body, prepare=build_config)
