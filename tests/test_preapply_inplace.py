"""The kept pre-apply product extended in place (calibration/preapply_cache.py, issue 16).

* A block's later step extends the kept product of the earlier steps' terms by its new terms (the
  product is kept per group of times: here G over the band and the bandpass, both over the whole
  observation, share K's), a 1-bin term (G over the band) multiplied as evaluated (broadcast over
  channels, not copied first): the solutions equal those of the per-block evaluation
  (chain.preapply_tables) bit for bit.
* The extension is written into the kept product's memory when nothing else references it, and into
  a new array when something does (a live view is never overwritten).
"""

import numpy as np
import pytest

from alakazam.calibration import chain, preapply_cache


@pytest.fixture(scope="module")
def kg_ms(tmp_path_factory):
    from alakazam.sim import simulate_ms

    ms = str(tmp_path_factory.mktemp("inplace") / "sim.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(16,), duration_h=1.0, int_s=120.0, scan_len_s=600.0,
                noise=0.05, seed=8, flag_rows=0.02, dead_ant=False, leakage=False)
    return ms


def _solve(ms, out):
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.io import hdf5

    run_solve(solve_config_from_dict(dict(
        ms=ms, output=out, ref_ant="C00", apply_parang=True, jones=["K", "G", "G"], field=["3C286"],
        time_interval=["scan", "inf", "inf"], freq_interval=["full", "full", "1MHz"],
        phase_only=[False, True, False], quiet=True)))
    return {k: hdf5.read_term(out, k) for k in ("K0", "G0", "G1")}


def test_extension_by_a_band_wide_gain_equals_per_block_evaluation(kg_ms, tmp_path, monkeypatch):
    calls = []
    compose = chain.compose

    def spy(terms, *a, **k):
        calls.append(k.get("full", True))
        return compose(terms, *a, **k)

    monkeypatch.setattr(chain, "compose", spy)
    got = _solve(kg_ms, str(tmp_path / "kept.h5"))
    assert False in calls                       # G1 extended K's kept product by G0 as evaluated
    monkeypatch.setattr(preapply_cache, "usable", lambda *a: False)
    want = _solve(kg_ms, str(tmp_path / "per_block.h5"))
    for k in want:
        assert len(got[k]) == len(want[k])
        for a, b in zip(got[k], want[k]):
            np.testing.assert_array_equal(a.flags, b.flags)
            np.testing.assert_array_equal(a.jones, b.jones)


class _Fake:
    """Stand-ins for what _chunk_diag reads: two diagonal terms evaluated by a patched compose."""

    def __init__(self):
        from types import SimpleNamespace

        self.meta = SimpleNamespace(spws={0: SimpleNamespace(freqs=np.arange(4.0), spw_id=0)},
                                    ant_names=["A", "B", "C"], active_ants=[0, 1, 2])
        self.fld = SimpleNamespace(name="F", ra=0.0, dec=0.0)
        self.ctx = SimpleNamespace(cache={})
        self.terms = [SimpleNamespace(key=k, jones_type="G", field_select="", time_interp="nearest",
                                      solution_field=(), freq_interp="", spwmap=None, sets=[object()],
                                      diagonal=True) for k in ("T0", "T1")]


def _fake_compose(terms, spw_id, times, freqs, names, *a, full=True, **k):
    v = {"T0": 2.0, "T1": 3.0}
    d = np.ones((len(times), len(names), 1, 2), np.complex128)
    for t in terms:
        d = d * v[t.key]
    if full:
        d = np.ascontiguousarray(np.broadcast_to(d, (len(times), len(names), len(freqs), 2)))
    return d, None


@pytest.mark.parametrize("hold_view", [False, True])
def test_in_place_only_when_unreferenced(monkeypatch, hold_view):
    monkeypatch.setattr(chain, "compose", _fake_compose)
    f = _Fake()
    times, scans, chans = np.arange(5.0), np.zeros(5, np.int64), np.arange(4)
    first = preapply_cache._chunk_diag(f.ctx, f.terms[:1], f.meta, 0, chans, f.fld, times, scans)
    assert (first == 2).all()
    addr = first.__array_interface__["data"][0]
    view = first[1:3] if hold_view else None
    del first
    second = preapply_cache._chunk_diag(f.ctx, f.terms, f.meta, 0, chans, f.fld, times, scans)
    assert (second == 6).all() and second.shape == (5, 3, 4, 2)
    assert (second.__array_interface__["data"][0] == addr) is (not hold_view)
    if hold_view:
        assert (view == 2).all()                # a live view of the shorter product keeps its values
