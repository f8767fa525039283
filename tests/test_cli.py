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
    """Without --quiet the console shows the summary; the engine's INFO lines go to demo.log."""
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    cap = capsys.readouterr()
    assert "recovered vs true" in cap.out and "demo.log" in cap.out
    assert "loaded [" not in cap.err and "solution groups" not in cap.err
    log = (tmp_path / "demo" / "demo.log").read_text()
    assert "K0: loaded [3C286(6t)] (6 ants, spw 0)" in log and "G1: " in log and "solution groups" in log
    import logging

    assert all(h.level <= logging.INFO for h in logging.getLogger().handlers)    # restored afterwards
