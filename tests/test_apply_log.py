"""Apply log hygiene: SEED's two lines per term and target field, once per SPW (the SPW named in the
line), however many chunks the data are read in."""

import logging
import re
import shutil

from alakazam.calibration import apply as apply_mod
from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict
from alakazam.core import ms_io


def test_two_lines_per_term_field_and_spw_not_per_chunk(small_chain_table, tmp_path, caplog, monkeypatch):
    ms, cal, truth = small_chain_table
    m = str(tmp_path / "c.ms")
    shutil.copytree(ms, m)
    chunks = []
    real = ms_io.iter_chunks

    def counting(*a, **k):
        for ch in real(*a, **k):
            chunks.append(ch.n_row)
            yield ch
    monkeypatch.setattr(ms_io, "iter_chunks", counting)
    caplog.set_level(logging.INFO, logger="alakazam.apply")
    res = run_apply(apply_config_from_dict(dict(
        ms=m, jones=["K0", "G0", "G1"], tables=[cal] * 3, target_field=["3C286", "TARGET"],
        time_interp=["nearest"] * 3,                   # (given: no note against CASA's default)
        memory_limit_gb=1e-4, quiet=True)))
    assert len(chunks) >= 3 * 2 * 2                    # several chunks per field and SPW
    # INFO only: the table was solved on another MS (the copy), which compat rightly warns about
    msgs = [r.getMessage() for r in caplog.records
            if r.name == "alakazam.apply" and r.levelno == logging.INFO]
    lines = [x for x in msgs if re.match(r"(K0|G0|G1): ", x)]
    assert lines == res["log"]
    assert len(lines) == 3 * 2 * 2 * 2                 # terms x 2 lines x fields x SPWs
    for key in ("K0", "G0", "G1"):
        for spw in (0, 1):
            loaded = [x for x in lines if re.fullmatch(rf"{key}: loaded \[.*\] \(5 ants, spw {spw}\)", x)]
            chosen = [x for x in lines
                      if re.fullmatch(rf"{key}: 3C286 -> (3C286|TARGET) spw {spw} \(.*\)", x)]
            assert len(loaded) == 2 and len(chosen) == 2, (key, spw, lines)
    assert apply_mod._with_spw("G0: 3C286 -> DA240 (nearest_time, time=linear 29->45)", 3) == \
        "G0: 3C286 -> DA240 spw 3 (nearest_time, time=linear 29->45)"
