"""Command line: run, info, fluxscale-info, simulate, demo; clean errors without tracebacks."""

import pytest

from alakazam.cli import main


def test_simulate_info_and_errors(tmp_path, capsys):
    ms = str(tmp_path / "x.ms")
    assert main(["simulate", ms, "--n-ant", "5", "--n-chan", "8", "--hours", "1"]) == 0
    assert (tmp_path / "x.ms.truth.npz").exists()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"solve:\n  - ms: {ms}\n    output: {tmp_path / 'c.h5'}\n    jones: [K, G]\n"
                   "    field: [3C286]\n    time_interval: [scan, 5parsecs]\n")
    capsys.readouterr()
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "solve[0].time_interval[1]" in err and "5parsecs" in err and "Traceback" not in err
    assert not (tmp_path / "c.h5").exists()
    with pytest.raises(Exception):
        main(["--debug", "run", str(cfg)])
    cfg.write_text(f"solve:\n  - ms: {ms}\n    output: {tmp_path / 'c.h5'}\n    jones: [K, G]\n"
                   "    ref_ant: C99\n    field: [3C286]\n")
    assert main(["run", str(cfg)]) == 2
    assert "C99" in capsys.readouterr().err
    assert not (tmp_path / "c.h5").exists()
    cfg.write_text(f"solve:\n  - ms: {ms}\n    output: {tmp_path / 'c.h5'}\n    jones: [K, G]\n"
                   "    field: [3C286]\n")
    assert main(["--quiet", "run", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "c.h5")]) == 0
    out = capsys.readouterr().out
    assert "K0" in out and "G0" in out and "3C286" in out
    assert main(["fluxscale-info", str(tmp_path / "c.h5")]) == 2
    assert main(["info", str(tmp_path / "nope.h5")]) == 2


def test_demo(tmp_path, capsys):
    assert main(["--quiet", "demo", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "recovered vs true" in out and "3C147" in out


def test_demo_details_go_to_its_log_file(tmp_path, capsys):
    """Without --quiet the console shows the summary; the engine's INFO lines go to demo.log.  The paths
    are printed whole: rich broke the line inside them at the console width ('de\nmo.log' under a
    long directory, seen when the tests ran under pytest-xdist's longer temporary paths)."""
    d = tmp_path / ("long_directory_name_" * 4) / "demo"
    assert main(["demo", "--dir", str(d)]) == 0
    cap = capsys.readouterr()
    assert "recovered vs true" in cap.out
    assert str(d / "demo.log") in cap.out and str(d / "demo.ms") in cap.out
    assert "loaded [" not in cap.err and "solution groups" not in cap.err
    log = (d / "demo.log").read_text()
    assert "K0: loaded [3C286(6t)] (6 ants, spw 0)" in log and "G1: " in log and "solution groups" in log
    import logging

    assert all(h.level <= logging.INFO for h in logging.getLogger().handlers)    # restored afterwards


def test_unexpected_failures_are_one_line_without_traceback(tmp_path, capsys, monkeypatch):
    """A casacore RuntimeError or an internal error: one line naming it, status 1; --debug re-raises."""
    import pytest

    from alakazam import cli

    for exc, what in ((RuntimeError("Table x.ms does not exist\n  (see log)"), "casacore"),
                      (ValueError("boom"), "internal error (ValueError)")):
        def fail(args, exc=exc):
            raise exc
        monkeypatch.setattr(cli, "cmd_info", fail)
        assert cli.main(["info", str(tmp_path / "x.ms")]) == 1
        err = capsys.readouterr().err
        assert f"alakazam: error: {what}:" in err and "Traceback" not in err and "--debug" in err
        assert len(err.strip().splitlines()) == 1
        with pytest.raises(type(exc)):
            cli.main(["--debug", "info", str(tmp_path / "x.ms")])


def test_flag_writers_wait_for_the_ms_lock(tmp_path, capsys):
    """akflag and a flag-version restore write FLAG only with the MS writer lock (one writer at a time):
    while another run holds it they stop with a clear error before writing anything."""
    import os
    import subprocess
    import sys

    import numpy as np
    from casacore.tables import table

    from alakazam.cli import main
    from alakazam.core import flagversions
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "l.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8,), duration_h=0.2, int_s=60.0, seed=2)
    with table(ms, ack=False) as t:
        before = t.getcol("FLAG")
    flagversions.save(ms, task="test")
    # another process holds the lock (within one thread the lock is re-entrant)
    code = ("import sys, time; from alakazam.core import locks\n"
            "with locks.writer_lock(sys.argv[1], 'ms'):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, ms], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (["flag", "--vis", ms, "--mode", "manual", "--antenna", "C01"],
                     ["flagmanager", "--vis", ms, "--mode", "restore", "--versionname", "test_1"]):
            assert main(argv) == 2
            assert "is in use by PID" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    with table(ms, ack=False) as t:
        assert np.array_equal(t.getcol("FLAG"), before)
    assert main(["flag", "--vis", ms, "--mode", "manual", "--antenna", "C01"]) == 0
    with table(ms, ack=False) as t:
        assert t.getcol("FLAG").sum() > before.sum()


def test_flag_number_lists_as_typed(capsys):
    """--clipminmax (a doubleVec) takes the numbers as separate words, or CASA's list as typed in casapy
    (0,5 / [0,5] / [0, 5]); a word that is no number is refused naming the option and the word."""
    import argparse

    import pytest

    from alakazam import cli_flag

    parser = argparse.ArgumentParser()
    cli_flag._add_task_options(parser, "akflag")
    for words in (["0", "5"], ["0,5"], ["[0,5]"], ["[0,", "5]"], ["0,", "5"]):
        assert parser.parse_args(["--clipminmax", *words]).clipminmax == [0.0, 5.0], words
    assert parser.parse_args(["--clipminmax", "[]"]).clipminmax == []
    assert parser.parse_args(["--clipminmax"]).clipminmax == []
    assert parser.parse_args(["--clipminmax=-1e3,2.5"]).clipminmax == [-1000.0, 2.5]
    assert parser.parse_args(["--clipminmax", "-1", "2.5"]).clipminmax == [-1.0, 2.5]
    with pytest.raises(SystemExit):
        parser.parse_args(["--clipminmax", "0,five"])
    err = capsys.readouterr().err
    assert "--clipminmax" in err and "'five' is not a number" in err


def test_flag_summary_of_a_quiet_run_is_printed_and_logged(sim_linear, tmp_path, capsys):
    """Review 53a: with --quiet a YAML run's mode='summary' printed nothing and its --log file lacked it.
    --quiet turns progress bars off, not results: the tables print, and the log file keeps the summary
    (logged for the file only: the terminal shows the tables once)."""
    import os

    ms, _ = sim_linear
    y = tmp_path / "s.yaml"
    y.write_text(f"flag:\n  - ms: {os.path.abspath(ms)}\n    mode: summary\n")
    log = tmp_path / "run.log"
    for quiet in (["--quiet"], []):
        assert main(["run", *quiet, "--log", str(log), str(y)]) == 0
        cap = capsys.readouterr()
        assert "akflag summary:" in cap.out and "flagged by antenna" in cap.out
        assert "akflag summary by antenna" not in cap.out + cap.err
    text = log.read_text()
    assert text.count("akflag summary: ") == 2 and text.count("akflag summary by correlation") == 2


def test_python_dash_m_alakazam_is_the_alakazam_command():
    """``python -m alakazam`` runs the ``alakazam`` command (alakazam/__main__.py): a tree on PYTHONPATH
    without its console scripts installed (it was "No module named alakazam.__main__")."""
    import subprocess
    import sys

    from alakazam import __version__

    r = subprocess.run([sys.executable, "-m", "alakazam", "--version"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"alakazam {__version__}", (r.stdout, r.stderr)
    r = subprocess.run([sys.executable, "-m", "alakazam", "info"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
