"""Measures data for casacore (alakazam.measures_data): which directory is chosen, the SEVERE
leap-second message never printed, the update command, and the parallactic angle against the
current leap-second count (TAI - UTC = 37 s since 2017-01-01; no leap second announced since)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from alakazam import measures_data
from alakazam.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAI_MINUS_UTC = 37.0


def _fake(d, date):
    p = os.path.join(d, "geodetic", "TAI_UTC")
    os.makedirs(p)
    with open(os.path.join(p, "table.dat"), "wb") as fh:
        fh.write(b"\x00VS_DATE\x00\x00" + date.encode() + b"/15:15\x00")
    return str(d)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for k in (measures_data.ENV, "CASARCFILES", "XDG_DATA_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    root = measures_data._pkg_dir("casacore")
    monkeypatch.setenv("AIPSPATH", root)        # as python-casacore sets it
    return tmp_path


def test_choice_newest_explicit_and_user_config(clean_env, monkeypatch):
    tmp = clean_env
    d, why, date = measures_data.choose()
    assert why in ("python-casacore wheel", "casadata package") and date is not None
    _fake(measures_data.private_dir(), "2099/01/02")
    d, why, date = measures_data.choose()
    assert d == measures_data.private_dir() and "private" in why and str(date) == "2099-01-02"
    _fake(measures_data.private_dir() + "_old", "1999/01/02")
    monkeypatch.setenv(measures_data.ENV, measures_data.private_dir() + "_old")
    assert measures_data.choose()[0] == measures_data.private_dir() + "_old"     # explicit wins
    monkeypatch.delenv(measures_data.ENV)
    os.makedirs(tmp / "home")
    (tmp / "home" / ".casarc").write_text("measures.directory: /somewhere\n")
    d, why, _ = measures_data.choose()
    assert d is None and ".casarc" in why                                        # the user's own rc
    monkeypatch.setenv("AIPSPATH", "/opt/casa")
    assert measures_data.choose()[0] is None


def test_update_from_folder(clean_env, capsys):
    src = _fake(clean_env / "download", "2099/03/04")
    os.makedirs(os.path.join(src, "ephemerides", "DE200"))
    assert main(["measures", "--update", "--from", src]) == 0
    out = capsys.readouterr().out
    assert measures_data.private_dir() in out and "2099-03-04" in out
    assert os.path.isdir(os.path.join(measures_data.private_dir(), "ephemerides", "DE200"))
    assert main(["measures", "--update", "--from", str(clean_env)]) == 2      # no geodetic/TAI_UTC
    assert "no geodetic/TAI_UTC" in capsys.readouterr().err


def _fresh_copy(dst):
    """The wheel's measures data with TAI_UTC's date set to today: stands in for a fresh download
    (this machine has no network) -- the content (37 s since 2017) is the current one."""
    import datetime

    from casacore.tables import table

    shutil.copytree(measures_data.bundled_dir(), dst)
    today = datetime.date.today().strftime("%Y/%m/%d/00:00")
    with table(os.path.join(dst, "geodetic", "TAI_UTC"), readonly=False, ack=False) as t:
        t.putkeyword("VS_DATE", today)
        t.putkeyword("VS_CREATE", today)
    return dst


SCRIPT = """
import numpy as np
from alakazam.jones import parang
print(parang.parallactic_angle(np.array([5.2e9, 5.2e9 + 600.0]), 3.5392576, 0.5324850,
                               np.array([-1601185.4, -5041977.5, 3554875.9]))[0])
"""


@pytest.mark.parametrize("data", ["default", "fresh"])
def test_no_severe_line(tmp_path, data):
    env = dict(os.environ, PYTHONPATH=ROOT, XDG_DATA_HOME=str(tmp_path / "xdg"))
    env.pop(measures_data.ENV, None)
    if data == "fresh":
        env[measures_data.ENV] = _fresh_copy(str(tmp_path / "fresh"))
    r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "SEVERE" not in r.stderr and "SEVERE" not in r.stdout
    stale = measures_data.table_date(env.get(measures_data.ENV) or measures_data.choose()[0])
    if data == "fresh" or stale is None:
        assert r.stderr.strip() == ""
    elif (np.datetime64("today") - np.datetime64(stale)).astype(int) > measures_data.STALE_DAYS:
        assert r.stderr.count("alakazam measures --update") == 1      # one warning instead


def test_parang_with_current_leap_seconds():
    """casacore's UTC -> TAI with the configured data is the current 37 s, and our parallactic angle
    (UTC times) equals me.posangle evaluated at the same instants given in TAI = UTC + 37 s."""
    from casacore.quanta import quantity

    from alakazam.jones import parang

    me = measures_data.measures()
    times = 5.2e9 + np.arange(0.0, 8 * 3600.0, 1800.0)            # 2023-09, 8 hours
    for t in (times[0], 5.29e9):                                   # and 2026-07
        tai = me.measure(me.epoch("utc", quantity(t, "s")), "tai")["m0"]["value"] * 86400.0
        assert abs(tai - t - TAI_MINUS_UTC) < 1e-4
    xyz = np.array([-1601185.4, -5041977.5, 3554875.9])           # VLA, ITRF m
    ra, dec = 3.539257626070549, 0.5324850445997038
    ours = parang.parallactic_angle(times, ra, dec, xyz)
    me.doframe(me.position("ITRF", *[f"{float(v)!r}m" for v in xyz]))
    src = me.direction("J2000", f"{ra!r}rad", f"{dec!r}rad")
    ref = []
    for t in times:
        me.doframe(me.epoch("TAI", f"{float(t + TAI_MINUS_UTC)!r}s"))
        ref.append(me.posangle(src, me.direction("AZEL", "0deg", "90deg")).get_value("rad"))
    d = np.angle(np.exp(1j * (ours - np.array(ref))))
    assert np.abs(d).max() < 1e-6, np.abs(d).max()
