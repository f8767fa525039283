"""A fluxscale block whose table an earlier solve block writes: its ``ms`` and ``spw`` are checked in
the preflight, before the solve runs (caltasks/yamlrun.py; fluxscale.planned_ms_spw_errors).

A review: ``ms: nosuch.ms`` in such a block was found only after the solve had run and written its
table ("written before the error"), against the rule that every bad parameter of a file is reported
before anything runs.
"""

import textwrap

import pytest

from alakazam.cli import main
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("fsplan")
    ms = str(d / "s.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(8, 8), duration_h=0.3, int_s=120.0, noise=0.05,
                seed=5, leakage=False, dead_ant=False)
    return ms


def _yaml(tmp_path, ms, extra):
    y = tmp_path / "f.yaml"
    y.write_text(textwrap.dedent(f"""
        solve:
          - ms: {ms}
            output: {tmp_path}/cal.h5
            ref_ant: C00
            jones: [G]
            field: [[3C286, 3C147]]
            time_interval: [inf]
        fluxscale:
          - reference_table: {tmp_path}/cal.h5
            reference_field: [3C286]
            transfer_field: [3C147]
            output: {tmp_path}/scaled.h5
            jones_type: G0
    """) + "".join(f"    {line}\n" for line in extra))
    return y


def test_bad_ms_and_spw_reported_before_the_solve(ms, tmp_path, capsys):
    y = _yaml(tmp_path, ms, ["ms: nosuch.ms", "spw: '7'"])
    assert main(["--quiet", "run", str(y)]) == 2
    err = capsys.readouterr().err
    assert "fluxscale[0].ms" in err and "nosuch.ms" in err
    assert "fluxscale[0].spw" in err and "'7'" in err
    assert not (tmp_path / "cal.h5").exists()              # nothing ran


def test_ms_not_a_measurement_set(ms, tmp_path, capsys):
    y = _yaml(tmp_path, ms, [f"ms: {tmp_path}"])             # a directory, not a Measurement Set
    assert main(["--quiet", "run", str(y)]) == 2
    assert "fluxscale[0].ms" in capsys.readouterr().err
    assert not (tmp_path / "cal.h5").exists()


def test_good_block_runs(ms, tmp_path, capsys):
    y = _yaml(tmp_path, ms, [f"ms: {ms}", "spw: '0,1'"])
    assert main(["--quiet", "run", str(y)]) == 0, capsys.readouterr().err
    assert (tmp_path / "scaled.h5").exists()
