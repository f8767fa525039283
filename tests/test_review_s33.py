"""Session 33's hostile reviews: the fixes that have no better home."""

import pytest

from alakazam.errors import ParameterError


def test_a_field_list_of_another_length_than_jones_says_how_to_give_several_fields(sim_linear, tmp_path):
    """akcal's field list is one selection per step (YAML's flat list is one for every step): a list of
    another length than jones names the one-string form, which the error did not."""
    from alakazam.caltasks import akcal

    ms, _ = sim_linear
    with pytest.raises(ParameterError) as e:
        akcal(vis=ms, caltable=str(tmp_path / "x.h5"), field=["3C286", "3C147"], jones=["G"], refant="C00")
    msg = str(e.value)
    assert "field: has 2 entries but jones has 1 steps" in msg and "field='3C286,3C147'" in msg
    assert not (tmp_path / "x.h5").exists()


def test_debug_keeps_the_exit_status(tmp_path):
    """`alakazam --debug` shows the traceback of a parameter error and still exits 2 (it exited 1, the
    status of an uncaught exception, where the same error exits 2 without --debug)."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"solve:\n  - ms: {tmp_path / 'none.ms'}\n    output: {tmp_path / 'c.h5'}\n"
                   "    jones: [G]\n")
    code = "import sys; sys.argv = ['alakazam'] + sys.argv[1:]; from alakazam.cli import entry; entry()"
    for debug, traced in ((["--debug"], True), ([], False)):
        r = subprocess.run([sys.executable, "-c", code, *debug, "run", str(cfg)], capture_output=True,
                           text=True, env=env, timeout=300)
        assert r.returncode == 2, (debug, r.returncode, r.stderr[-500:])
        assert ("Traceback" in r.stderr) == traced and "none.ms" in r.stderr


def test_fluxscale_takes_the_model_the_transfer_solutions_were_solved_against(tmp_path):
    """A transfer field solved with CASA's smodel (a 2 Jy point source) instead of its MODEL_DATA (the
    simulator's 1 Jy): akfluxscale read MODEL_DATA and gave half the flux density; the solutions now
    record their model (attrs ``smodel`` / ``model_column``) and the true 2.5 Jy comes out."""
    from alakazam.caltasks import akcal, akfluxscale
    from alakazam.io import hdf5
    from alakazam.sim import simulate_ms

    ms, cal = str(tmp_path / "s.ms"), str(tmp_path / "c.h5")
    simulate_ms(ms, n_ant=5, n_chan=(4,), duration_h=1.0, noise=0.05, seed=7, time_gains=False,
                leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0)
    akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint="scan", refant="C00", minblperant=3)
    akcal(vis=ms, caltable=cal, field="3C147", jones=["G"], solint="scan", refant="C00", minblperant=3,
          smodel=[2.0, 0.0, 0.0, 0.0], append=True)
    s147 = [s for s in hdf5.read_term(cal, "G0") if s.field_name == "3C147"]
    assert list(s147[0].attrs["smodel"]) == [2.0, 0.0, 0.0, 0.0]
    res = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "f.h5"), reference=["3C286"],
                      transfer=["3C147"], jones="G0")
    rec = next(v for v in res.values() if isinstance(v, dict) and v.get("fieldName") == "3C147")
    flux = float(rec["0"]["fluxd"][0])
    assert abs(flux / 2.5 - 1) < 0.02, flux


@pytest.mark.parametrize("word", ["corrected", "Corrected", "model"])
def test_casa_datacolumn_words_are_not_taken_as_new_output_columns(word):
    """akapply(outputcolumn='corrected') created a column named 'corrected' (akflag's datacolumn word for
    CORRECTED_DATA): refused, naming CORRECTED_DATA."""
    from alakazam.calibration.compat import output_column_errors

    errs = output_column_errors(word, "DATA", ["DATA", "MODEL_DATA", "FLAG"])
    assert errs and "datacolumn word" in errs[0] and "CORRECTED_DATA" in errs[0]
    assert output_column_errors("CORRECTED_DATA", "DATA", ["DATA"]) == []
    assert output_column_errors("corrected_2", "DATA", ["DATA"]) == []
