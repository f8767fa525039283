"""YAML unknown-key hints: a task (CASA) parameter name used as a YAML key is answered with the YAML key
the task XML maps it to (tasks_xml ``yamlkey``).

From branch review-gmrt (commit 8588a17, tests/test_review_gmrt.py::
test_yaml_task_parameter_name_points_to_its_yaml_key) and the fix on branch calwt.
"""

import pytest


@pytest.mark.parametrize("section,key,yamlkey", [
    ("solve", "solint", "time_interval"),
    ("solve", "calmode", "phase_only"),
    ("solve", "vis", "ms"),
    ("solve", "caltable", "output"),
    ("apply", "gainfield", "field_select"),
    ("apply", "field", "target_field"),
    ("apply", "vis", "ms"),
])
def test_yaml_task_parameter_name_points_to_its_yaml_key(section, key, yamlkey):
    """A CASA user writes the task's (CASA's) parameter name in a YAML block.  The YAML checker
    suggests the closest yaml key by spelling, not the key the task XML maps that parameter to
    (tasks_xml yamlkey), so the hint is wrong or missing.  Measured at e098209:
    solve.solint -> "did you mean 'solnorm'?"; solve.calmode -> "did you mean 'smodel'?";
    apply.gainfield -> "did you mean 'solution_field'?" (that is CASA's gainsolutionfield, the
    opposite meaning); solve.vis, solve.caltable, apply.vis, apply.field -> no hint at all (apply's
    field is target_field, while solve's field is field).  Good ones for contrast: refant -> ref_ant,
    minsnr -> min_snr, interp -> time_interp, gaintable (apply) -> tables."""
    from alakazam import config
    from alakazam.errors import ParameterError

    d = {"ms": "x.ms", "output": "o.h5", "jones": ["G"], "tables": ["a.h5"], key: "x"}
    fn = config.solve_config_from_dict if section == "solve" else config.apply_config_from_dict
    with pytest.raises(ParameterError) as ei:
        fn(d, where=f"{section}[0]")
    line = [ln for ln in str(ei.value).splitlines() if f".{key}:" in ln]
    assert line, str(ei.value)
    msg = line[0].split("(valid:")[0]
    assert yamlkey in msg, f"{section}.{key}: {msg.strip()!r} does not name {yamlkey!r}"
