"""fluxscale reads each SPW's model flux from the MS that SPW's solutions were solved on (the set's
``ms`` attr): a solve over several MSs (one per SPW, as after a split by SPW) records a different MS
per SPW.  A review: the first set's MS was used for every SPW ("s1.ms has no MODEL_DATA rows of 3C147
in SPW 1"), so such a table could not be flux-scaled at all."""

import textwrap

import numpy as np
from casacore.tables import table

from alakazam.cli import main
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


def test_model_flux_from_each_spws_ms(tmp_path, capsys):
    base = str(tmp_path / "a.ms")
    truth = simulate_ms(base, n_ant=5, n_ant_extra=0, n_chan=(8, 8), duration_h=0.5, int_s=120.0,
                        noise=0.02, seed=4, leakage=False, dead_ant=False)
    parts = []
    for d in (0, 1):                                   # one MS per DATA_DESC_ID (all subtables kept)
        p = str(tmp_path / f"s{d}.ms")
        with table(base, ack=False) as t:
            q = t.query(f"DATA_DESC_ID=={d}")
            q.copy(p, deep=True)
            q.close()
        parts.append(p)
    y = tmp_path / "m.yaml"
    y.write_text(textwrap.dedent(f"""
        solve:
          - {{ms: [{parts[0]}, {parts[1]}], output: {tmp_path}/cal.h5, ref_ant: C00, jones: [G],
              field: [[3C286, 3C147]], time_interval: [inf]}}
        fluxscale:
          - {{reference_table: {tmp_path}/cal.h5, reference_field: [3C286], transfer_field: [3C147],
              output: {tmp_path}/s.h5, jones_type: G0}}
    """))
    assert main(["--quiet", "run", str(y)]) == 0, capsys.readouterr().err
    sets = hdf5.read_term(str(tmp_path / "cal.h5"), "G0")
    assert len({s.attrs["ms"] for s in sets}) == 2      # (the case: one MS per SPW)
    got = {e["spw"]: e["fluxd"] for e in hdf5.read_fluxscale(str(tmp_path / "s.h5")) if e["field"] == "3C147"}
    assert sorted(got) == [0, 1]
    assert truth.flux_model["3C147"][0] != truth.flux_true["3C147"][0]     # (a scale to find)
    np.testing.assert_allclose(list(got.values()), truth.flux_true["3C147"][0], rtol=0.1)
