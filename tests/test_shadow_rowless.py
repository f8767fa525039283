"""akflag mode='shadow': an antenna of the ANTENNA table without any data row shadows too (review 54f:
placed 13 m from C02 it shadows C02 in CASA 6.7's flagdata -- 38,304 samples -- and in akflag nothing;
now its baselines come from the ANTENNA positions, the PHASE_DIR and the sidereal time, and the same
MS gives CASA's 38,304 samples exactly, measured).  Only the rows of the antennas it shadows are
flagged; far away it shadows nothing."""

import shutil

import numpy as np
from casacore.tables import table

from alakazam.caltasks import akflag
from alakazam.sim import simulate_ms


def test_an_antenna_without_rows_shadows_its_neighbour(tmp_path):
    base = str(tmp_path / "s.ms")
    simulate_ms(base, n_ant=6, n_chan=(4,), duration_h=1.5, int_s=60.0, seed=54, leakage=False,
                dead_ant=False, flag_rows=0)
    with table(base, ack=False) as t:
        used = set(t.getcol("ANTENNA1").tolist()) | set(t.getcol("ANTENNA2").tolist())
    with table(base + "::ANTENNA", ack=False) as a:
        n_ant = a.nrows()
    rowless = [i for i in range(n_ant) if i not in used]
    assert rowless, "the simulator's ANTENNA table holds antennas without rows"
    c, nb = rowless[0], sorted(used)[1]

    def run(offset):
        ms = str(tmp_path / f"m{int(offset)}.ms")
        shutil.copytree(base, ms)
        with table(ms + "::ANTENNA", readonly=False, ack=False) as a:
            p = a.getcol("POSITION")
            p[c] = p[nb] + np.array([8.0, 9.0, 5.0]) * offset / 13.04
            a.putcol("POSITION", p)
        akflag(vis=ms, mode="shadow")
        with table(ms, ack=False) as t:
            return t.getcol("FLAG").any(axis=(1, 2)), t.getcol("ANTENNA1"), t.getcol("ANTENNA2")

    far, _, _ = run(5000.0)
    assert not far.any()
    near, a1, a2 = run(13.04)
    assert near.any()
    assert np.all((a1[near] == nb) | (a2[near] == nb))        # only the neighbour's rows
