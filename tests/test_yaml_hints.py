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


def _hint(section, block, key, under=""):
    """The message for ``key`` of a ``section`` block (``under``: in that nested mapping)."""
    from alakazam import config
    from alakazam.errors import ParameterError

    d = {"ms": "x.ms", "output": "o.h5", "jones": ["G"], "tables": ["a.h5"], "reference_table": "r.h5",
         "reference_field": "3C286"}
    d.update(block)
    fn = {"solve": config.solve_config_from_dict, "apply": config.apply_config_from_dict,
          "fluxscale": config.fluxscale_config_from_dict}[section]
    with pytest.raises(ParameterError) as ei:
        fn(d, where=f"{section}[0]")
    tail = f".{under}.{key}:" if under else f".{key}:"
    line = [ln for ln in str(ei.value).splitlines() if tail in ln]
    assert line, str(ei.value)
    return line[0].split("(valid:")[0]


@pytest.mark.parametrize("section,block,key,under,want", [
    # a task parameter whose YAML key is in a nested mapping
    ("solve", {"gaintable": ["k.h5"]}, "gaintable", "", "'tables' under 'external_preapply'"),
    # the task name inside the mapping
    ("solve", {"external_preapply": {"tables": ["k.h5"], "jones": ["K0"], "gainfield": ["3C286"]}},
     "gainfield", "external_preapply", "write 'field_select'"),
    # a mapping's key at the top of the block
    ("solve", {"field_select": ["3C286"]}, "field_select", "", "belongs under 'external_preapply'"),
    # a task name's near miss: the YAML key of that parameter
    ("solve", {"solints": "int"}, "solints", "", "'time_interval' (akcal's solint)"),
    # a YAML-only key that stands for a task parameter value (calmode 'a')
    ("solve", {"calmode": ["p"]}, "calmode", "", "'phase_only' or 'amp_only'"),
    ("solve", {"selectdata": True}, "selectdata", "", "akcal parameter without a YAML key"),
    ("fluxscale", {"fluxtable": "f.h5"}, "fluxtable", "", "write 'output'"),
    ("apply", {"outputcolumn": "CORRECTED_DATA"}, "outputcolumn", "", "write 'output_col'"),
    # spelling still helps for a plain typo of a YAML key
    ("apply", {"tme_interp": ["linear"]}, "tme_interp", "", "did you mean 'time_interp'"),
])
def test_yaml_unknown_key_hints(section, block, key, under, want):
    msg = _hint(section, block, key, under)
    assert want in msg, msg


def test_yaml_hint_from_a_run_file(tmp_path):
    """The same hint from `alakazam run`'s loader (a YAML file with CASA names)."""
    from alakazam import config
    from alakazam.errors import ParameterError

    p = tmp_path / "run.yaml"
    p.write_text("solve:\n  - ms: x.ms\n    output: o.h5\n    jones: [G]\n    solint: int\n"
                 "apply:\n  - ms: x.ms\n    jones: [G0]\n    tables: [o.h5]\n    gainfield: [3C286]\n")
    with pytest.raises(ParameterError) as ei:
        config.load_run_config(str(p))
    text = str(ei.value)
    assert "'solint' is the akcal parameter name: in YAML write 'time_interval'" in text, text
    assert "'gainfield' is the akapply parameter name: in YAML write 'field_select'" in text, text
    assert "solution_field'?" not in text and "solnorm'?" not in text, text
