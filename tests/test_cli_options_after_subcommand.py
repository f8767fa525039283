"""The global options --debug, --quiet and --log are accepted after any subcommand too, and
``alakazam plot`` takes its --outdir default from akplot's XML (alakazam/cli.py).

A review: ``alakazam run --debug x.yaml`` was "unrecognized arguments" (only ``alakazam --debug run``
worked), and ``alakazam plot cal.h5`` required --outdir although akplot's outdir has a default.
"""

import pytest

from alakazam.cli import build_parser, main
from alakazam.errors import AlakazamError


@pytest.mark.parametrize("argv", [["run", "--debug", "x.yaml"], ["info", "--debug", "--quiet", "c.h5"],
                                  ["plot", "c.h5", "--debug", "--log", "r.log"],
                                  ["flag", "--vis", "m.ms", "--debug"]])
def test_global_options_after_the_subcommand(argv):
    a = build_parser().parse_args(argv)
    assert a.debug is True
    assert a.quiet is ("--quiet" in argv)
    assert a.log == ("r.log" if "--log" in argv else None)


def test_before_the_subcommand_still_works():
    a = build_parser().parse_args(["--debug", "--quiet", "run", "x.yaml"])
    assert a.debug and a.quiet
    a = build_parser().parse_args(["run", "x.yaml"])
    assert not a.debug and not a.quiet and a.log is None


def test_debug_after_run_shows_the_error_raised(tmp_path):
    with pytest.raises(AlakazamError, match="does not exist"):
        main(["run", "--debug", str(tmp_path / "missing.yaml")])
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2


def test_plot_outdir_default_is_akplots():
    from alakazam.caltasks import akplot

    want = next(p.default for p in akplot.spec.params if p.name == "outdir")
    assert want == "plots"
    assert build_parser().parse_args(["plot", "c.h5"]).outdir == want


@pytest.mark.parametrize("argv", [["--log", "a.log", "run", "--log", "b.log", "x.yaml"],
                                  ["run", "--log", "a.log", "--log", "b.log", "x.yaml"],
                                  ["--log", "a.log", "flag", "--vis", "m.ms", "--log", "b.log"]])
def test_log_given_twice_is_an_error(argv, capsys):
    """``--log a --log b`` kept the last file without a word (argparse): the log looked for in a.log
    was never written.  Two different files are an error naming both; the same file twice is one."""
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(argv)
    assert e.value.code == 2
    assert "--log given twice ('a.log' and 'b.log')" in capsys.readouterr().err


def test_the_same_log_twice_is_one_log():
    a = build_parser().parse_args(["--log", "a.log", "run", "--log", "a.log", "x.yaml"])
    assert a.log == "a.log"
    assert build_parser().parse_args(["--log", "b.log", "run", "x.yaml"]).log == "b.log"   # (fresh)


def test_one_parser_parses_several_command_lines():
    """The files seen were kept on the class (a review): a second parse with the same parser, or with
    another parser built after it, was refused as '--log given twice'; 'a.log' and './a.log' too."""
    p1 = build_parser()
    p2 = build_parser()
    assert p1.parse_args(["--log", "a.log", "run", "x.yaml"]).log == "a.log"
    assert p1.parse_args(["--log", "b.log", "run", "x.yaml"]).log == "b.log"
    assert p2.parse_args(["run", "--log", "c.log", "x.yaml"]).log == "c.log"
    assert p1.parse_args(["--log", "a.log", "run", "--log", "./a.log", "x.yaml"]).log == "./a.log"
