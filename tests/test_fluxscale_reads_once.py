"""akfluxscale reads each MS's metadata once per call (a review, session 56: its checks read it once per
transfer field and SPW, twice -- 65 reads of 0.4-0.8 s for 32 SPWs, 25 s of a 31.6 s run; 114 s for
64 SPWs), and each table's key once (hdf5.keep_terms); a changed MS is read again (core/metacache's
key: its files' name, size, mtime, inode); the results are those of the uncached reads."""

import json
import shutil

import pytest
from casacore.tables import table

from alakazam.calibration import fluxscale
from alakazam.calibration.fluxscale import check_inputs, run_fluxscale
from alakazam.config import fluxscale_config_from_dict, solve_config_from_dict
from alakazam.core import metacache, ms_io
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

N_SPW = 6


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    d = tmp_path_factory.mktemp("fs_reads")
    ms, cal = str(d / "m.ms"), str(d / "cal.h5")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(2,) * N_SPW, duration_h=0.3, int_s=60.0,
                scan_len_s=120.0, noise=0.05, seed=5, delays=False, bandpass=False, leakage=False,
                crosshand=False, dead_ant=False, flag_rows=0.0)
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["G"],
                                          field=["3C286", "3C147"], time_interval="scan", quiet=True)))
    return ms, cal


def _count_meta_reads(monkeypatch):
    calls = []
    real = ms_io.read_meta_uncached

    def counted(ms):
        calls.append(str(ms))
        return real(ms)

    monkeypatch.setattr(ms_io, "read_meta_uncached", counted)
    return calls


def _cfg(cal, out, **kw):
    return fluxscale_config_from_dict(dict(reference_table=cal, reference_field=["3C286"],
                                           transfer_field=["3C147"], output=out, **kw))


def test_akfluxscale_reads_the_metadata_and_the_table_once(solved, tmp_path, monkeypatch):
    from alakazam.caltasks import akfluxscale

    ms, cal = solved
    assert len({s.spw for s in hdf5.read_term(cal, "G0")}) == N_SPW
    calls = _count_meta_reads(monkeypatch)
    reads = hdf5.TERM_STATS["reads"]
    res = akfluxscale(caltable=cal, fluxtable=str(tmp_path / "o.h5"), reference=["3C286"],
                      transfer=["3C147"], jones="G0")
    assert len(calls) == 1                      # the checks (twice) and the model flux: one read
    assert hdf5.TERM_STATS["reads"] == reads + 1    # G0 of the table: one read for three uses
    assert sorted(k for k in res["1"] if k.isdigit()) == [str(i) for i in range(N_SPW)]
    # the engine called on its own (the YAML runner's block): one read too
    calls.clear()
    run_fluxscale(_cfg(cal, str(tmp_path / "o2.h5")))
    assert len(calls) == 1
    # outside a call nothing is kept: the next call reads again
    calls.clear()
    check_inputs(_cfg(cal, str(tmp_path / "o3.h5")))
    assert len(calls) == 1


def test_results_identical_to_uncached_reads(solved, tmp_path, monkeypatch):
    """The dict and the table's values are those of a run without either cache (every read from the
    files, as before); only the table's write_id differs."""
    ms, cal = solved
    a = run_fluxscale(_cfg(cal, str(tmp_path / "a.h5")))
    monkeypatch.setenv("ALAKAZAM_META_CACHE", "0")
    monkeypatch.setenv("ALAKAZAM_TERM_CACHE", "0")
    import contextlib

    monkeypatch.setattr(fluxscale, "_keep_ms", contextlib.nullcontext)     # no MS handle kept either
    calls = _count_meta_reads(monkeypatch)
    b = run_fluxscale(_cfg(cal, str(tmp_path / "b.h5")))
    assert len(calls) > 1                       # (the caches are really off here)
    ja = json.dumps(a, sort_keys=True, default=repr).replace(str(tmp_path / "a.h5"), "OUT")
    assert ja == json.dumps(b, sort_keys=True, default=repr).replace(str(tmp_path / "b.h5"), "OUT")
    sa, sb = hdf5.read_term(str(tmp_path / "a.h5"), "G0"), hdf5.read_term(str(tmp_path / "b.h5"), "G0")
    assert len(sa) == len(sb)
    for x, y in zip(sa, sb):
        assert x.jones.tobytes() == y.jones.tobytes() and repr(x.attrs) == repr(y.attrs)
    fa, fb = (hdf5.read_fluxscale(str(tmp_path / n)) for n in ("a.h5", "b.h5"))
    assert fa and repr(fa) == repr(fb)


def test_a_changed_ms_is_read_again(solved, tmp_path, monkeypatch):
    """Inside one scope (a task call, the YAML runner's blocks) the kept metadata serves only the MS as
    it was: a renamed FIELD row is seen by the next check, which then refuses the transfer field."""
    ms0, cal = solved
    ms = str(tmp_path / "copy.ms")
    shutil.copytree(ms0, ms)
    cfg = _cfg(cal, str(tmp_path / "o.h5"), ms=ms)
    calls = _count_meta_reads(monkeypatch)
    with metacache.keep():
        assert check_inputs(cfg) == {}
        assert check_inputs(cfg) == {} and len(calls) == 1         # unchanged: kept
        with table(ms + "::FIELD", readonly=False, ack=False) as t:
            names = list(t.getcol("NAME"))
            t.putcell("NAME", names.index("3C147"), "OTHER")
        errors = check_inputs(cfg)
        assert len(calls) == 2                                      # changed: read again
        assert any("no field named '3C147'" in m for m in errors.get("ms", [])), errors
