"""CASA selection parsers (pure): antenna, uvrange, timerange, intent, observation, field '<2', solint
'int' / '5ints'.  Each convention of alakazam/core/msselect.py's docstring is pinned here."""

import itertools

import numpy as np
import pytest

from alakazam.config import TimeInterval, parse_time_interval, resolve_integrations
from alakazam.core.msselect import (mjds_to_str, parse_antenna, parse_intent, parse_observation,
                                    parse_time, parse_timerange, parse_uvrange, time_mask, uv_masks)
from alakazam.core.selection import parse_fields
from alakazam.errors import AlakazamError

NAMES = ["ea01", "ea02", "ea03", "ea05", "10", "ea11"]     # a name that looks like an index


def _pairs():
    a1, a2 = zip(*[(i, j) for i, j in itertools.combinations_with_replacement(range(len(NAMES)), 2)])
    return np.array(a1), np.array(a2)


def _sel(expr):
    a1, a2 = _pairs()
    m = parse_antenna(expr, NAMES).mask(a1, a2)
    return {(NAMES[i], NAMES[j]) for i, j, k in zip(a1, a2, m) if k}


ALL = {(NAMES[i], NAMES[j]) for i, j in zip(*_pairs())}


def test_antenna_syntax():
    assert parse_antenna("", NAMES) is None
    # a bare antenna selects cross-correlations only (CASA 6.7 flagdata, measured on an MS with
    # auto-correlations: tests/test_flag_parity.py); '!ea05' therefore keeps ea05's auto-correlation
    X = {b for b in ALL if b[0] != b[1]}
    assert _sel("!ea05") == {b for b in ALL if "ea05" not in b or b == ("ea05", "ea05")}
    assert _sel("ea01&ea02") == {("ea01", "ea02")}
    # && admits an autocorrelation only when the antenna is on both sides (ea01&&ea01,ea02)
    assert _sel("ea01&&ea02") == {("ea01", "ea02")}
    assert _sel("ea01&&ea01,ea02") == {("ea01", "ea02"), ("ea01", "ea01")}
    assert _sel("ea01&&*") == {b for b in ALL if "ea01" in b}                  # autos included
    assert _sel("ea01&*") == {b for b in ALL if "ea01" in b and b[0] != b[1]}  # cross only
    assert _sel("ea01&&&") == {("ea01", "ea01")}
    assert _sel("ea01") == {b for b in X if "ea01" in b}
    assert _sel("ea01,ea02&") == {("ea01", "ea02")}
    # integers: a name first ('10' is antenna 4's name), then an ANTENNA id (3 = ea05)
    assert _sel("10") == {b for b in X if "10" in b}
    assert _sel("3") == {b for b in X if "ea05" in b}
    assert _sel("0,1,3") == {b for b in X if {"ea01", "ea02", "ea05"} & set(b)}
    assert _sel("0~1") == _sel("ea01,ea02")
    assert _sel("ea0*") == {b for b in X if {"ea01", "ea02", "ea03", "ea05"} & set(b)}
    assert _sel("ea01&ea02;ea03&ea05") == {("ea01", "ea02"), ("ea03", "ea05")}
    assert _sel("ea01;!ea01&ea02") == {b for b in X if "ea01" in b} - {("ea01", "ea02")}
    for bad in ("ea99", "!nope", "ea01&ea77", "99"):
        with pytest.raises(AlakazamError, match="antenna"):
            parse_antenna(bad, NAMES)


def test_antenna_ranges_match_integer_names_first():
    """'a~b' is the integers a..b, each a name first (its decimal text), then an id; ids past the last
    antenna are dropped -- CASA's MSSelection (msseltoindex / flagdata, compared by a review on MSs with
    integer names in and out of id order).  Taken as ids, '1~3' on names '1'..'8' was ids 1~3 and
    akcal antenna='!5~7' kept antenna '5'; taken as the ids between the ends' ids, names out of id
    order selected other antennas."""
    def ids(expr, names):
        return parse_antenna(expr, names).items[0].left.tolist()

    names = [str(i + 1) for i in range(8)]
    assert ids("1~3", names) == [0, 1, 2]
    assert ids("3~5", names) == [2, 3, 4]
    assert ids("3", names) == [2]
    assert ids("0~1", names) == [0]              # 0: no such name, id 0; 1: the name '1', id 0
    assert ids("7~9", names) == [6, 7]           # 9: neither a name nor an id (8 antennas): dropped
    a1, a2 = (np.array(x) for x in zip(*itertools.combinations(range(8), 2)))
    neg = parse_antenna("!5~7", names).mask(a1, a2)
    dropped = {int(names[x]) for x in range(8) if not neg[(a1 == x) | (a2 == x)].any()}
    assert dropped == {5, 6, 7}
    perm = ["3", "1", "2", "8", "7", "6", "5", "4"]          # names out of id order
    assert sorted(int(perm[i]) for i in ids("1,3~4", perm)) == [1, 3, 4]
    assert ids("0~7", perm) == [0, 1, 2, 4, 5, 6, 7]          # 3: the name '3' (id 0); id 3 ('8') not
    mixed = ["1", "2", "ea03", "ea04", "5", "6", "7", "8"]
    assert [mixed[i] for i in ids("1~3", mixed)] == ["1", "2", "ea04"]   # 3: no name '3', id 3
    zero = [f"0{i + 1}" for i in range(8)]
    assert [zero[i] for i in ids("01~03", zero)] == ["02", "03", "04"]   # integers 1~3: ids (CASA)
    assert ids("01", zero) == [0]                                        # a whole name first
    for bad in ("3~1", "20~30"):
        with pytest.raises(AlakazamError, match="antenna"):
            parse_antenna(bad, names)


def test_uvrange_syntax_and_masks():
    assert parse_uvrange("<5klambda") == [(0.0, 5000.0, "lambda")]
    assert parse_uvrange(">100m") == [(100.0, np.inf, "m")]
    assert parse_uvrange("1~10klambda") == [(1000.0, 10000.0, "lambda")]
    assert parse_uvrange("0~1000") == [(0.0, 1000.0, "m")]                 # default unit metres
    assert parse_uvrange("0.5~2km, >3Mlambda") == [(500.0, 2000.0, "m"), (3e6, np.inf, "lambda")]
    for bad in ("5", "1~2parsec", "<1~2m", "abc", "5~1m"):
        with pytest.raises(AlakazamError, match="uvrange"):
            parse_uvrange(bad)
    uvw = np.array([[30.0, 40.0, 7.0], [300.0, 400.0, 0.0], [3000.0, 4000.0, 0.0]])   # |uv| 50, 500, 5000 m
    rows, chan = uv_masks(parse_uvrange("100~1000"), uvw, None)
    assert rows.tolist() == [False, True, False] and chan is None
    freqs = np.array([1.0e9, 2.0e9])                        # lambda = 0.2998, 0.1499 m
    rows, chan = uv_masks(parse_uvrange("<2klambda"), uvw, freqs)
    ref = (np.hypot(uvw[:, 0], uvw[:, 1])[:, None] * freqs / 299792458.0) <= 2000.0
    np.testing.assert_array_equal(chan, ref)
    assert chan[1].tolist() == [True, False]                # one row, in range in one channel only
    np.testing.assert_array_equal(rows, ref.any(axis=1))


def test_timerange_syntax():
    t_first = parse_time("2024/04/01/07:31:24.8", 0)
    assert mjds_to_str(t_first) == "2024/04/01/07:31:24.8"
    day = parse_time("2024/04/01", 0)
    assert t_first - day == pytest.approx(7 * 3600 + 31 * 60 + 24.8)
    [(a, b, pt)] = parse_timerange("07:40:00~08:00:00", t_first)
    assert (a - day, b - day, pt) == (7 * 3600 + 40 * 60, 8 * 3600, False)
    [(a, b, _)] = parse_timerange("2024/04/01/07:40:00~2024/04/02/01:00:00", t_first)
    assert b - a == pytest.approx(17 * 3600 + 20 * 60)
    [(a, b, _)] = parse_timerange("2024/04/02/07:40:00~08:00:00", t_first)     # the upper bound's date
    assert a - day == pytest.approx(86400 + 7 * 3600 + 40 * 60) and b - a == 20 * 60
    [(a, b, _)] = parse_timerange(">08:00:00", t_first)
    assert a - day == 8 * 3600 and b == np.inf
    [(a, b, _)] = parse_timerange("<08:00:00", t_first)
    assert a == -np.inf and b - day == 8 * 3600     # ('<08:00', no seconds, is refused: test_timerange_casa)
    [(a, b, _)] = parse_timerange("07:40:00+00:10:00", t_first)
    assert b - a == 600
    # a single time selects the integration whose interval contains it
    rng = parse_timerange("07:40:10", t_first)
    times = day + 7 * 3600 + 40 * 60 + np.array([-60.0, 0.0, 60.0])
    assert time_mask(rng, times, np.full(3, 60.0)).tolist() == [False, True, False]
    assert time_mask(parse_timerange("07:39:00~07:40:00", t_first), times).tolist() == [True, True, False]
    for bad in ("25:00:00", "07:70", "2024/13/01", "yesterday", "08:00~07:00"):
        with pytest.raises(AlakazamError, match="timerange"):
            parse_timerange(bad, t_first)


def test_intent_observation_fields_solint():
    modes = ["CALIBRATE_BANDPASS#ON_SOURCE,CALIBRATE_FLUX#ON_SOURCE", "CALIBRATE_PHASE#ON_SOURCE",
             "OBSERVE_TARGET#ON_SOURCE"]
    assert parse_intent("*BANDPASS*", modes).tolist() == [0]
    assert parse_intent("*PHASE*,OBSERVE*", modes).tolist() == [1, 2]
    assert parse_intent("2", modes).tolist() == [2]
    with pytest.raises(AlakazamError, match="intents present: CALIBRATE_BANDPASS"):
        parse_intent("*POLANGLE*", modes)
    with pytest.raises(AlakazamError, match="no STATE"):
        parse_intent("*BANDPASS*", [])
    assert parse_observation("", [0, 1]) is None
    assert parse_observation("0~1", [0, 1, 2]) == [0, 1] and parse_observation("<1", [0, 1]) == [0]
    names = ["3C286", "3C147", "TARGET"]
    assert parse_fields("<2", names) == [0, 1]
    assert parse_fields("0~2", names) == [0, 1, 2]
    assert parse_fields(">0", names) == [1, 2]
    with pytest.raises(AlakazamError, match="field"):
        parse_fields("<0", names)
    assert parse_time_interval("int") == TimeInterval("ints", 1.0, "int")
    assert parse_time_interval("5ints") == TimeInterval("ints", 5.0, "5ints")
    assert (resolve_integrations(parse_time_interval("5ints"), 2.0)
            == TimeInterval("seconds", 10.0, "5ints", snap=1.0, ints=5))
    assert resolve_integrations(parse_time_interval("60s"), 2.0).seconds == 60.0
    for bad in ("0ints", "ints", "5 intz"):
        with pytest.raises(AlakazamError, match="time interval"):
            parse_time_interval(bad)
