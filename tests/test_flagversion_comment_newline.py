"""A flag version's comment with a line break stays one FLAG_VERSION_LIST entry (it became a phantom
version that CASA's flagmanager listed; review of session 39)."""

import shutil

from alakazam.core import flagversions


def test_comment_line_break_is_one_entry(sim_linear, tmp_path):
    src, _ = sim_linear
    ms = str(tmp_path / "m.ms")
    shutil.copytree(src, ms)
    flagversions.save(ms, comment="before RFI\nchecked by JD", name="v1")
    flagversions.save(ms, comment="second", name="v2")
    vs = flagversions.list_versions(ms)
    assert [v["name"] for v in vs] == ["v1", "v2"]
    lines = open(f"{ms}.flagversions/FLAG_VERSION_LIST").read().splitlines()
    assert lines[0] == "v1 : before RFI checked by JD" and len(lines) == 2
