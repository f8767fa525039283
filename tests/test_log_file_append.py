"""``--log FILE`` appends to FILE only when FILE is new, empty or an earlier log (alakazam/cli.py).

A review ran ``alakazam --log r6.yaml run r6.yaml``: the log lines were appended to the YAML being
run, which was then no longer valid YAML.  Any other existing file (a script, a table) is refused
the same way, before anything runs; an earlier log is appended to, as CASA appends to casa.log.
"""

from alakazam.cli import main

YAML = "fluxscale:\n  - reference_table: nowhere.h5\n"


def test_log_into_the_yaml_being_run_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    y = tmp_path / "r.yaml"
    y.write_text(YAML)
    assert main(["--quiet", "--log", str(y), "run", str(y)]) == 2
    err = capsys.readouterr().err
    assert "--log" in err and "not an alakazam log" in err and "r.yaml" in err
    assert y.read_text() == YAML                             # untouched


def test_log_appended_to_an_earlier_log(tmp_path, capsys):
    log = tmp_path / "run.log"
    main(["--log", str(log), "info", str(tmp_path / "missing.h5")])
    first = log.read_text()
    assert first and first[:4].isdigit()                     # the log's own format
    main(["--log", str(log), "info", str(tmp_path / "missing.h5")])
    second = log.read_text()
    assert second.startswith(first) and len(second) > len(first)    # appended, not replaced
    empty = tmp_path / "empty.log"
    empty.write_text("")
    main(["--log", str(empty), "info", str(tmp_path / "missing.h5")])
    assert "--log" not in capsys.readouterr().err            # an empty file is fine
