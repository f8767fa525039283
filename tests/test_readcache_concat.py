"""core/readcache (and flagcache) key on a concatenated MS -- CASA's multi-MS, whose rows live in the
tables of SUBMSS/: a write to a part between two blocks changes the key (flagcache.ms_state), so the
second block reads the new data (without this it took the first block's read)."""

import os
import shutil

import numpy as np
from casacore.tables import table

from alakazam.config import solve_config_from_dict
from alakazam.core import flagcache, readcache
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


def _concat_ms(tmp_path):
    src = str(tmp_path / "src.ms")
    simulate_ms(src, n_ant=6, n_ant_extra=0, n_chan=(16,), duration_h=0.5, int_s=60.0, seed=4)
    parts = []
    os.makedirs(tmp_path / "SUBMSS")
    with table(src, ack=False) as t:
        for i, cond in enumerate(("SCAN_NUMBER <= 3", "SCAN_NUMBER > 3")):
            q = t.query(cond)
            parts.append(str(tmp_path / "SUBMSS" / f"p{i}.ms"))
            q.copy(parts[-1], deep=True)
            q.close()
    ms = str(tmp_path / "c.mms")
    opened = [table(p, ack=False) for p in parts]
    c = table(opened, concatsubtables=[], ack=False)
    c.rename(ms)
    c.close()
    for t in opened:
        t.close()
    for name in os.listdir(parts[0]):               # the subtables beside the concatenated main table
        if os.path.isdir(os.path.join(parts[0], name)):
            shutil.copytree(os.path.join(parts[0], name), os.path.join(ms, name))
    return ms, parts


def _amp(path):
    sets = hdf5.read_term(path, "G0")
    return np.concatenate([np.abs(s.jones[..., 0, 0]).ravel() for s in sets])


def test_a_write_to_a_part_of_a_concatenated_ms_is_seen(tmp_path):
    ms, parts = _concat_ms(tmp_path)
    readcache.clear()
    flagcache.clear()
    d = dict(ms=ms, ref_ant="C00", jones=["G"], field=["3C286"], time_interval=["inf"],
             freq_interval=["full"], quiet=True)
    with readcache.keep():
        run_solve(solve_config_from_dict(dict(d, output=str(tmp_path / "a.h5"))))
        for p in parts:                                # someone writes DATA x 4 in the parts
            with table(p, readonly=False, ack=False) as t:
                t.putcol("DATA", t.getcol("DATA") * 4)
        run_solve(solve_config_from_dict(dict(d, output=str(tmp_path / "b.h5"))))
    a, b = _amp(str(tmp_path / "a.h5")), _amp(str(tmp_path / "b.h5"))
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0)
    assert ok.any()
    np.testing.assert_allclose(b[ok] / a[ok], 2.0, rtol=1e-4)   # gain amplitudes x 2: the new data
