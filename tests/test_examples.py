"""Every examples/*.yaml runs through the YAML runner against a simulated MS, with real outcomes."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from alakazam.cli import main
from alakazam.core import ms_io
from alakazam.io import hdf5

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
SEED_NAMES = {"simple_kg", "bandpass_timegain", "full_polarization", "fluxscale", "external_preapply",
              "pinned_field", "nearest_sky", "phase_only", "spw_channel_selection", "multi_spw"}


def test_the_ten_seed_examples_exist():
    assert {p.stem for p in EXAMPLES} == SEED_NAMES | {"flagging"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, tmp_path, sim_linear):
    ms0, truth = sim_linear
    shutil.copytree(ms0, tmp_path / "sim.ms")
    shutil.copy(path, tmp_path / path.name)
    assert main(["--quiet", "run", str(tmp_path / path.name)]) == 0
    cfg = yaml.safe_load(path.read_text())
    for block in cfg.get("solve", []):
        out = tmp_path / block["output"]
        keys = hdf5.list_keys(str(out))
        assert len(keys) >= len(block["jones"])
        for key in keys:
            for s in hdf5.read_term(str(out), key):
                n_ant = len(truth.ant_names)
                assert s.jones.shape[0] == n_ant and s.jones.shape[3:] == (2, 2)
                assert s.flags.mean() < 0.5
    for block in cfg.get("fluxscale", []):
        rows = hdf5.read_fluxscale(str(tmp_path / block["output"]))
        assert rows and all(abs(r["scale_p"] - 2.5) < 0.05 for r in rows)
    for block in cfg.get("apply", []):
        meta = ms_io.read_meta(str(tmp_path / "sim.ms"))
        assert block.get("output_col", "CORRECTED_DATA") in meta.columns
        fields = block.get("target_field") or ["3C286"]
        fid = ms_io.resolve_fields(meta, fields)[0]
        ch = ms_io.read_rows(str(tmp_path / "sim.ms"), 0, [fid], data_col="CORRECTED_DATA", model_col=None,
                             meta=meta)
        assert np.isfinite(ch.data).all()


def test_flagging_example_flags_rfi_then_calibrates(tmp_path, sim_linear):
    """examples/flagging.yaml on the simulated MS with a persistent RFI channel injected into DATA
    (every row, 2-6x the calibrator flux, random phase, unflagged): the flag blocks flag that channel
    entirely before the solve, save akflag_1.. akflag_5, and the flux bootstrap is right."""
    from casacore.tables import table

    from alakazam.core import flagversions

    ms0, truth = sim_linear
    ms = str(tmp_path / "sim.ms")
    shutil.copytree(ms0, ms)
    rng = np.random.default_rng(11)
    with table(ms, readonly=False, ack=False) as t:
        dd = t.getcol("DATA_DESC_ID")
        rows = np.flatnonzero(dd == 0)
        q = t.selectrows(rows)
        d = q.getcol("DATA")
        n = (len(rows), d.shape[2])
        d[:, 7, :] += 14.9 * rng.uniform(2, 6, n) * np.exp(2j * np.pi * rng.uniform(size=n))
        q.putcol("DATA", d)
        q.close()
    path = Path(__file__).parent.parent / "examples" / "flagging.yaml"
    shutil.copy(path, tmp_path / path.name)
    assert main(["--quiet", "run", str(tmp_path / path.name)]) == 0
    with table(ms, ack=False) as t:
        q = t.selectrows(rows)              # (FLAG of the whole MS has two shapes: never getcol it whole)
        f = q.getcol("FLAG")
        q.close()
    assert f[:, 7].all()
    assert f.mean() < 0.25
    # (then the apply's: propagate_flags, CASA applycal's calflag, saves the flags before it writes FLAG)
    assert [v["name"] for v in flagversions.list_versions(ms)] == [f"akflag_{k}" for k in range(1, 6)] + \
        ["akapply_1"]
    rows_fs = hdf5.read_fluxscale(str(tmp_path / "cal_scaled.h5"))
    assert rows_fs and all(abs(r["scale_p"] - 2.5) < 0.05 for r in rows_fs)
