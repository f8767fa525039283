"""chain._by_field is built once per term and SPW (review 56a: rebuilt for every chunk and block, 25.8 s of
a 46 s apply of a 150-field mosaic): the same values as building it each time, and rebuilt when the
term's sets are other objects."""

import copy

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration import chain
from alakazam.caltasks import akapply, akcal
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def cal(tmp_path_factory):
    d = tmp_path_factory.mktemp("memo")
    ms = str(d / "m.ms")
    simulate_ms(ms, n_ant=5, n_chan=(8, 8), duration_h=1.0, int_s=60.0, scan_len_s=300.0, noise=0.05,
                seed=3, leakage=False)
    g = str(d / "g.h5")
    akcal(vis=ms, caltable=g, field="3C286,3C147", jones=["G"], solint=["int"], refant="C00")
    kg = str(d / "kg.h5")
    akcal(vis=ms, caltable=kg, field="3C286,3C147", jones=["K", "G"], solint=["scan", "int"], refant="C00")
    return ms, g, kg


def test_built_once_per_term_and_spw(cal):
    term = chain.load_term(cal[1], "G0")
    a = chain._by_field(term, 0)
    assert chain._by_field(term, 0) is a
    assert chain._by_field(term, 1) is not a
    fresh = chain._by_field_uncached(term, 0)
    assert list(a) == list(fresh)
    for name in a:
        for f in ("time", "jones", "flags", "scan"):
            np.testing.assert_array_equal(getattr(a[name], f), getattr(fresh[name], f))
    # other sets (a copy of the term with sets of its own): built again, never the first term's
    t2 = copy.copy(term)
    drop = next(s for s in term.sets if int(s.attrs["spw"]) == 0)
    t2.sets = [copy.copy(s) for s in term.sets if s is not drop]
    b = chain._by_field(t2, 0)
    assert b is not a
    assert sum(len(f.time) for f in b.values()) < sum(len(f.time) for f in a.values())
    assert chain._by_field(term, 0) is a            # the original keeps its own


def test_apply_unchanged_and_built_once(cal, monkeypatch):
    ms, g = cal[:2]
    calls = []
    real = chain._by_field_uncached

    def counted(term, spw_id):
        calls.append((id(term), int(spw_id)))
        return real(term, spw_id)

    monkeypatch.setattr(chain, "_by_field_uncached", counted)
    akapply(vis=ms, gaintable=[g], jones=["G0"], interp=["linear"])
    with table(ms, ack=False) as t:
        memo = t.getcol("CORRECTED_DATA")
    n_memo = len(calls)
    assert len(set(calls)) == n_memo                 # each (term, SPW) once
    # the same apply without the memo: every call builds it afresh
    monkeypatch.setattr(chain, "_by_field", lambda term, spw_id: real(term, spw_id))
    akapply(vis=ms, gaintable=[g], jones=["G0"], interp=["linear"])
    with table(ms, ack=False) as t:
        np.testing.assert_array_equal(t.getcol("CORRECTED_DATA"), memo)


def test_the_k_copies_of_a_frame_are_made_once(cal):
    """delayframe.own_factor evaluates the K of each gain set's own field as the solve pre-applied it: a
    copy of the K per time interpolation, kept on the K (one per gain set before: its hand views and
    timelines built again for every set, 7.7 s of the review's mosaic apply)."""
    from alakazam.calibration import delayframe

    k = chain.load_term(cal[2], "K0")
    g = chain.load_term(cal[2], "G0")
    sets = [s for s in g.sets if int(s.attrs["spw"]) == 0]
    assert len(sets) > 2
    outs = [delayframe.own_factor(s, [k], 0, np.asarray(s.freq, float)) for s in sets]
    copies = k.__dict__["_own_copies"][1]
    assert len(copies) == 1
    k2 = next(iter(copies.values()))
    assert k2 is not k and k2.field_select == "nearest_time"
    # the same factors as from a fresh copy each time
    k.__dict__.pop("_own_copies")
    again = [delayframe.own_factor(s, [k], 0, np.asarray(s.freq, float)) for s in sets]
    for a, b in zip(outs, again):
        np.testing.assert_array_equal(a, b)
