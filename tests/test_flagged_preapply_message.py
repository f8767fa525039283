"""A solution group of a step whose every solution is flagged is said with its reasons; when an earlier
step of the block (pre-applied to it) has every solution flagged in the same field, SPW and scan, the
warning names that step -- also when some of the group's solutions were flagged by a check (minblperant:
the pre-applied K's flags left too few baselines).  Before, that case blamed FLAG, SIGMA and MODEL_DATA
alone (a review: G0 after a K0 flagged on a second subarray)."""

import logging
import types

import numpy as np

from alakazam import flow


def _set(key_flags, quality, scan=2):
    return types.SimpleNamespace(flags=key_flags, field_name="3C147", spw=0, scan_id=scan, attrs={},
                                 quality=quality, reference_counts=None, pol_flags=None)


def test_group_warning_names_the_flagged_preapplied_step(caplog, tmp_path):
    k0 = _set(np.ones((5, 1, 1), bool), {})
    g0 = _set(np.ones((5, 1, 5), bool), {"minblperant": 20})          # 5 without data, 20 by minblperant
    ok = _set(np.zeros((5, 1, 5), bool), {}, scan=1)                   # another scan: usable
    cfg = types.SimpleNamespace(model_col="MODEL_DATA", ms=str(tmp_path / "x.ms"), data_col="DATA",
                                ref_ant="C00", spw="", scan="", output=str(tmp_path / "o.h5"))
    pending = {"K0": [k0, _set(np.zeros((5, 1, 1), bool), {}, scan=1)], "G0": [g0, ok]}
    import alakazam.core.ms_io as ms_io
    orig = ms_io.weight_column
    ms_io.weight_column = lambda ms, col: "SIGMA"
    try:
        with caplog.at_level(logging.WARNING, logger="alakazam"):
            flow._refuse_all_flagged(cfg, pending)
    finally:
        ms_io.weight_column = orig
    msgs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("G0 field 3C147")]
    assert len(msgs) == 1
    assert "minblperant flagged 20" in msgs[0] and "the pre-applied K0 of this block has every" in msgs[0]
