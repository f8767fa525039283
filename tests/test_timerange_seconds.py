"""timerange times and durations without seconds ('hh:mm') are refused, naming timerange and the forms.

Measured with CASA 6.7 (casatools ms.msselect on the MS of :func:`_ms`: 30 integrations of 60 s from
2024/04/01/07:46:24.8): CASA reads a two-field 'a:b' as minutes:seconds -- '2024/04/01/07:50',
'07:50', '2024/04/01/07:48~2024/04/01/07:52' and '07:48~07:52' select nothing, '>2024/04/01/23:59' and
'>2024/04/01/59:00' select everything, '2024/04/01/07:50~2024/04/01/08:00:00' selects from the first
integration, '2024/04/01/07:50:00+01:00' is 60 s (one integration) where '+01:00:00' is an hour.
That is an accident of its parser (CASA documents hh:mm:ss with fields dropped from the left): following
it would silently select other data than the user meant, and reading 'hh:mm' as hours:minutes (as
alakazam did: one integration) would select other data than CASA does for the same string.  So both
are refused before anything runs; hh:mm:ss forms are unchanged (tests/test_msselect.py,
tests/test_review_s25_task.py).
"""

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest
from casacore.tables import table

from alakazam.core.msselect import parse_timerange
from alakazam.errors import AlakazamError, ParameterError
from alakazam.sim import simulate_ms

CASA_PY = os.environ.get("ALAKAZAM_CASA_PYTHON", "/work/casavenv/bin/python")
needs_casa = pytest.mark.skipif(not os.access(CASA_PY, os.X_OK), reason=f"no CASA Python at {CASA_PY}")


@pytest.fixture(scope="module")
def ms(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("trsec") / "t.ms")
    simulate_ms(path, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.5, int_s=60.0, scan_len_s=600.0,
                noise=0.05, seed=3, leakage=False, dead_ant=False, flag_rows=0.0)
    return path


NO_SECONDS = ["2024/04/01/07:50", "07:50", "<08:00", ">2024/04/01/23:59", "07:48~07:52",
              "2024/04/01/07:48:00~2024/04/01/07:52", "07:50:00+01:00", "07:00:00~08:00:00,07:50"]


@pytest.mark.parametrize("text", NO_SECONDS)
def test_no_seconds_refused(text):
    with pytest.raises(AlakazamError) as e:
        parse_timerange(text, 60401 * 86400.0 + 7 * 3600)
    msg = str(e.value)
    assert msg.startswith("timerange: ") and "has no seconds" in msg and "minutes:seconds" in msg
    assert "hh:mm:ss" in msg and ":00'" in msg            # the form to give, e.g. '07:50:00'


def test_seconds_forms_unchanged():
    day = 60401 * 86400.0
    assert parse_timerange("2024/04/01/07:50:00", day) == [(day + 28200, day + 28200, True)]
    assert parse_timerange("07:48:00~07:52:30.5", day) == [(day + 28080, day + 28350.5, False)]
    assert parse_timerange("07:50:00+01:00:00", day) == [(day + 28200, day + 31800, False)]
    assert parse_timerange("07:50:00+60", day) == [(day + 28200, day + 28260, False)]


def test_tasks_refuse_before_anything_runs(ms, tmp_path):
    from alakazam.caltasks import akcal, akflag

    with table(ms, ack=False) as t:
        flag0 = t.getcol("FLAG")
    cal = str(tmp_path / "c.h5")
    for call in (lambda: akflag(vis=ms, mode="manual", timerange="2024/04/01/07:50"),
                 lambda: akcal(vis=ms, caltable=cal, jones=["G"], timerange="2024/04/01/07:50")):
        with pytest.raises(ParameterError) as e:
            call()
        k = [k for k in e.value.errors if k.endswith("timerange")]
        assert k, e.value.errors
        msg = " ".join(e.value.errors[k[0]])
        assert "'2024/04/01/07:50'" in msg and "'2024/04/01/07:50:00'" in msg, msg
    assert not os.path.exists(cal)
    with table(ms, ack=False) as t:
        np.testing.assert_array_equal(t.getcol("FLAG"), flag0)
    assert not os.path.exists(ms + ".flagversions")


@needs_casa
def test_casa_reads_hh_mm_as_minutes_seconds(ms, tmp_path):
    """The measurement the refusal rests on (integration indices CASA selects)."""
    cases = ["2024/04/01/07:50", ">2024/04/01/23:59", "2024/04/01/07:50:00+01:00", "2024/04/01/07:50:00",
             "2024/04/01/07:50~2024/04/01/08:00:00"]
    code = textwrap.dedent(f"""
        import json
        import numpy as np
        from casatools import ms as mstool, table
        tb = table()
        tb.open({ms!r}); times = np.unique(tb.getcol("TIME")); tb.close()
        m = mstool()
        out = {{}}
        for tr in {json.dumps(cases)}:
            m.open({ms!r})
            out[tr] = ([int(np.searchsorted(times, x)) for x in np.unique(m.getdata(["time"])["time"])]
                       if m.msselect({{"time": tr}}) else [])
            m.close()
        json.dump(out, open("out.json", "w"))
    """)
    r = subprocess.run([CASA_PY, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-3000:]
    casa = json.load(open(tmp_path / "out.json"))
    assert casa["2024/04/01/07:50"] == []                        # 00:07:50: before the data
    assert casa[">2024/04/01/23:59"] == list(range(30))          # after 00:23:59: everything
    assert casa["2024/04/01/07:50:00+01:00"] == [4]              # 60 s, not an hour
    assert casa["2024/04/01/07:50:00"] == [4]                    # with seconds: the integration
    assert casa["2024/04/01/07:50~2024/04/01/08:00:00"] == list(range(14))
