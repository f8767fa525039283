"""CASA selection syntax (pure parsers, no MS): spw/channel, scan and field strings."""

import numpy as np
import pytest

from alakazam.core.selection import parse_fields, parse_scans, parse_spw
from alakazam.errors import AlakazamError

N_CHAN = {0: 64, 1: 16, 2: 8, 4: 4}
FREQS = {s: 1.400e9 + 1e6 * np.arange(n) for s, n in N_CHAN.items()}
ALL = {s: list(range(n)) for s, n in N_CHAN.items()}

SPW_CASES = [
    ("0", {0: ALL[0]}),
    ("", ALL),
    ("*", ALL),
    ("0~2,4", ALL),
    ("<2", {0: ALL[0], 1: ALL[1]}),
    (">1", {2: ALL[2], 4: ALL[4]}),
    ("0:5~61", {0: list(range(5, 62))}),
    ("*:1~3", {0: [1, 2, 3], 1: [1, 2, 3], 2: [1, 2, 3], 4: [1, 2, 3]}),
    ("0:0~10;15~60", {0: list(range(0, 11)) + list(range(15, 61))}),
    ("0:0~10^2", {0: [0, 2, 4, 6, 8, 10]}),
    ("0:10~50,1,2", {0: list(range(10, 51)), 1: ALL[1], 2: ALL[2]}),
    ("1:3", {1: [3]}),
    ("0:1.401~1.404GHz", {0: [1, 2, 3, 4]}),
    ("0:2~3,0:7~8", {0: [2, 3, 7, 8]}),
]


@pytest.mark.parametrize("text,expected", SPW_CASES)
def test_spw_strings(text, expected):
    got = dict(parse_spw(text, N_CHAN, FREQS))
    assert got == expected


@pytest.mark.parametrize("text,match", [
    ("0:70~80", "outside SPW 0"),
    ("3", "3 is not present"),
    ("0:a~b", "cannot parse channel range"),
    ("x", "cannot parse 'x' at position 0"),
    ("0,1,zz", "at position 4"),
    ("0:5~2", "the first channel 5 is after the last 2"),
    ("0:2.0~2.1GHz", "selects no channel"),
    ("0:1404~1401MHz", "first frequency is above the last"),     # CASA: "Start of range greater than end"
])
def test_spw_errors(text, match):
    with pytest.raises(AlakazamError, match=match):
        parse_spw(text, N_CHAN, FREQS)


@pytest.mark.parametrize("text,expected,said", [
    # an item naming several SPWs of different sizes: a range is cut at each SPW's last channel, and left
    # out of one it starts past (CASA's MSSelection cuts it too, and selects the last channel for one that
    # starts past it: '*:3~10' equals CASA's msseltoindex; a review, 4 SPWs of 16, 24, 32 and 8 channels)
    ("*:3~10", {0: list(range(3, 11)), 1: list(range(3, 11)), 2: list(range(3, 8)), 4: [3]},
     ["SPW 2 (8 channels): 3~10 cut to 3~7", "SPW 4 (4 channels): 3~10 cut to 3~3"]),
    ("*:0~1;6~9", {0: [0, 1, 6, 7, 8, 9], 1: [0, 1, 6, 7, 8, 9], 2: [0, 1, 6, 7], 4: [0, 1]},
     ["SPW 2 (8 channels): 6~9 cut to 6~7", "SPW 4 (4 channels): 6~9 left out"]),
    ("1~2:10~12", {1: [10, 11, 12]}, ["SPW 2 (8 channels): 10~12 left out"]),
    # a frequency part in the SPWs that hold it, the channel parts in every SPW (before: an SPW without the
    # band lost its channel parts too, silently -- a second review)
    ("*:0~1;1.420~1.422GHz", {0: [0, 1, 20, 21, 22], 1: [0, 1], 2: [0, 1], 4: [0, 1]}, []),
    ("*:14~15;1.4005~1.4015GHz", {0: [1, 14, 15], 1: [1, 14, 15], 2: [1], 4: [1]},
     ["SPW 2 (8 channels): 14~15 left out", "SPW 4 (4 channels): 14~15 left out"]),
    # a frequency part that no SPW holds: said (it was left out without a word)
    ("*:1.2~1.25GHz;0~1", {0: [0, 1], 1: [0, 1], 2: [0, 1], 4: [0, 1]},
     ["'1.2~1.25GHz' selects no channel of SPWs 0, 1, 2, 4 (left out)"]),
])
def test_spw_ranges_past_some_spws_end(text, expected, said, caplog):
    import logging
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        got = dict(parse_spw(text, N_CHAN, FREQS))
    assert got == expected
    msg = " ".join(r.getMessage() for r in caplog.records)
    for x in said:
        assert x in msg, msg


@pytest.mark.parametrize("text,match", [
    ("*:70~80", r"'\*:70~80' selects no channel of SPWs 0, 1, 2, 4"),     # past every SPW's end
    ("1:14~20", "channels 14~20 outside SPW 1"),                          # one SPW: an error (CASA cuts)
])
def test_spw_ranges_past_the_end_errors(text, match):
    with pytest.raises(AlakazamError, match=match):
        parse_spw(text, N_CHAN, FREQS)


def test_spw_frequency_range_needs_freqs():
    with pytest.raises(AlakazamError, match="needs the channel frequencies"):
        parse_spw("0:1.401~1.404GHz", N_CHAN, {})


@pytest.mark.parametrize("text,expected", [
    ("1~5,7", [1, 2, 3, 4, 5, 7]),
    ("<5", [1, 2, 3, 4]),
    (">3", [4, 5, 7, 9]),
    ("9,1", [1, 9]),
    ("*", [1, 2, 3, 4, 5, 7, 9]),
    ("6~8", [7]),
])
def test_scan_strings(text, expected):
    assert parse_scans(text, [9, 1, 2, 3, 4, 5, 7]) == expected


@pytest.mark.parametrize("text,match", [("6", "6 is not present"), ("1,a", "'a' at position 2"),
                                        ("2~x", "cannot parse '2~x'")])
def test_scan_errors(text, match):
    with pytest.raises(AlakazamError, match=match):
        parse_scans(text, [1, 2, 3, 4, 5, 7])


NAMES = ["3C286", "3C147", "TARGET", "J1331+3030"]


@pytest.mark.parametrize("sel,expected", [
    ("", [0, 1, 2, 3]),
    ([], [0, 1, 2, 3]),
    ("3C286", [0]),
    (["3C147", "3C286"], [1, 0]),
    ("3C*", [0, 1]),
    ("TARGET,0", [2, 0]),
    ("1~3", [1, 2, 3]),
    ("J1331?3030", [3]),
    ([2, "3C286", "3C286"], [2, 0]),
])
def test_field_selections(sel, expected):
    assert parse_fields(sel, NAMES) == expected


@pytest.mark.parametrize("sel,match", [
    ("NOPE", "'NOPE' \\(item 0\\) is not a field name or id; available: 3C286, 3C147, TARGET"),
    ("3C286,X*", "pattern 'X\\*' \\(item 1\\) matches no field"),
    ("4~9", "range '4~9' \\(item 0\\) selects no field id \\(ids 0~3\\)"),      # CASA: an error too
    ("2~1", "range '2~1' \\(item 0\\) selects no field id"),
    ("7", "'7' \\(item 0\\)"),
])
def test_field_errors(sel, match):
    with pytest.raises(AlakazamError, match=match):
        parse_fields(sel, NAMES)


def test_field_range_past_the_table_is_clipped_with_a_warning(caplog):
    """CASA 6.7's MSSelection (msseltoindex on 3 fields: '0~5' -> 0, 1, 2 and '1~5' -> 1, 2, each with
    a warning; '5~7' an error): a range that goes past the last field id is clipped, and said."""
    import logging

    with caplog.at_level(logging.WARNING, logger="alakazam"):
        assert parse_fields("2~9", NAMES) == [2, 3]
    assert "range '2~9' goes past the last field id, 3: ids 2~3 selected" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        assert parse_fields("0~3", NAMES) == [0, 1, 2, 3]
    assert caplog.text == ""


def test_field_range_warning_once_per_task_call_or_run(caplog, tmp_path):
    """The precheck, the plan and the flow each parse the selection: the warning came 3-8 times per
    run (a review).  Once per task call / YAML run (core/warnonce.py); outside one, every parse."""
    import logging

    from alakazam.core import warnonce

    def said():
        return caplog.text.count("goes past the last field id")

    with caplog.at_level(logging.WARNING, logger="alakazam"):
        parse_fields("2~9", NAMES)
        parse_fields("2~9", NAMES)
        assert said() == 2
        caplog.clear()
        with warnonce.SCOPE.keep():
            parse_fields("2~9", NAMES)
            parse_fields("2~9", NAMES)
            parse_fields("1~9", NAMES)
        assert said() == 2                      # '2~9' once, '1~9' once
        caplog.clear()
        with warnonce.SCOPE.keep():             # a new call says it again
            parse_fields("2~9", NAMES)
        assert said() == 1

    from alakazam.caltasks import akflag
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "f.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.1, int_s=60.0, seed=1,
                dead_ant=False, leakage=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akflag(vis=ms, mode="manual", field="0~5", action="calculate")
    assert said() == 1, caplog.text


def test_warn_once_unsaid_forgets_what_was_said_inside(caplog):
    """warnonce.unsaid: a message said inside (a convergence probe's, with logging off) does not keep the
    same message from being said after it; one said before stays said."""
    import logging

    from alakazam.core import warnonce

    with caplog.at_level(logging.WARNING, logger="alakazam"), warnonce.SCOPE.keep():
        warnonce.warning("alakazam", "before")
        with warnonce.unsaid():
            warnonce.warning("alakazam", "inside")
            warnonce.warning("alakazam", "before")
        warnonce.warning("alakazam", "inside")
        warnonce.warning("alakazam", "before")
    said = [r.getMessage() for r in caplog.records]
    assert said == ["before", "inside", "inside"], said
