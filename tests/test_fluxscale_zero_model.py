"""akfluxscale's model flux leaves out MODEL_DATA samples that are 0 in every correlation (review 60b).

The solve flags such samples (core/cellflags.py: a zero model carries no gain information), so the
transfer field's gains are solved against the rest of its model; the model flux that multiplies the
gain ratio must be the mean over the same samples.  It was the mean over every sample of the first 200
rows: 3C147 (true 2.5 Jy, model 1 Jy) with MODEL_DATA 0 on one antenna's baselines came out 1.86 Jy, with
a model over half the band 1.24 Jy, both silently; with the model 0 in its first scans (the first 200
rows) akfluxscale refused ("the model flux ... is 0.0").
"""

import numpy as np
import pytest

from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("fs_zero_model")
    path = str(d / "z.ms")
    simulate_ms(path, n_ant=6, n_chan=(16,), int_s=120.0, scan_len_s=600.0, duration_h=1.5, noise=0.02,
                seed=5, leakage=False, crosshand=False, dead_ant=False, time_gains=False)
    return path


def _flux(tmp_path, src, how):
    import shutil

    from casacore.tables import table

    from alakazam.caltasks import akcal, akfluxscale

    path = str(tmp_path / "z.ms")
    shutil.copytree(src, path)
    with table(path, readonly=False, ack=False) as t:
        fid, a1, a2, tm = (t.getcol(c) for c in ("FIELD_ID", "ANTENNA1", "ANTENNA2", "TIME"))
        m = t.getcol("MODEL_DATA")
        rows = fid == 1                                      # 3C147
        if how == "antenna":
            a = np.unique(np.r_[a1, a2])[3]
            m[rows & ((a1 == a) | (a2 == a))] = 0
        elif how == "channels":
            m[rows, 8:, :] = 0
        elif how == "first_scans":
            ut = np.unique(tm[rows])
            m[rows & (tm < ut[len(ut) // 2])] = 0
        t.putcol("MODEL_DATA", m)
    cal = str(tmp_path / "g.h5")
    akcal(vis=path, caltable=cal, field="3C286,3C147", jones=["G"], solint="scan", refant="C00")
    res = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "s.h5"), reference=["3C286"],
                      transfer=["3C147"], jones="G0")
    return res["1"]["0"]["fluxd"][0], res["1"]["0"]["fluxdErr"][0]


@pytest.mark.parametrize("how", ["none", "antenna", "channels", "first_scans"])
def test_zero_model_samples_do_not_dilute_the_flux(ms, tmp_path, how):
    flux, err = _flux(tmp_path, ms, how)
    assert abs(flux - 2.5) < max(5 * err, 0.01), (how, flux, err)
