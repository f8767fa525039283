"""io/hdf5.read_term reads a leaf group's arrays with h5py's low-level calls and finds the groups from
their names (a review, session 56: 4.4 ms per group, an 800-group table 4.4 s per read, read 3 times by
a fluxscale): the same SolutionSets -- types, dtypes, shapes, strides, bytes, attrs and their order --
as the high-level reads of before (kept here as the reference); inside keep_terms() an unchanged
table's key is read once, a changed one again."""

import os

import h5py
import numpy as np
import pytest

from alakazam.io import hdf5
from alakazam.io.hdf5 import SolutionSet, _decode_attr


def _reference_read_term(path, key):
    """read_term as it was (h5py high-level: visititems, ``[()]`` per dataset, attrs.items())."""
    def read_group(g):
        st = g["solver_stats"]
        extra = {k: st[k][()] for k in st if k not in ("converged", "n_iter", "cost")}
        return SolutionSet(
            jones=g["jones"][()], flags=g["flags"][()], time=g["time"][()], freq=g["freq"][()],
            delay=g["delay"][()] if "delay" in g else None, converged=st["converged"][()],
            n_iter=st["n_iter"][()], cost=st["cost"][()],
            attrs={k: _decode_attr(v) for k, v in g.attrs.items()}, extra=extra,
            pol_flags=g["pol_flags"][()].astype(bool) if "pol_flags" in g else None)

    with h5py.File(path, "r") as f:
        out = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "jones" in obj:
                out.append(obj)
        f[key].visititems(visit)
        return [read_group(g) for g in out]


def _same(u, v, where=""):
    assert type(u) is type(v), where
    if isinstance(u, np.ndarray):
        assert (u.dtype, u.shape, u.strides) == (v.dtype, v.shape, v.strides), where
        assert u.tobytes() == v.tobytes(), where
    elif isinstance(u, np.generic):
        assert u.dtype == v.dtype and u.tobytes() == v.tobytes(), where
    elif isinstance(u, dict):
        assert list(u) == list(v), where
        for k in u:
            _same(u[k], v[k], f"{where}.{k}")
    elif isinstance(u, (list, tuple)):
        assert len(u) == len(v), where
        for i, (x, y) in enumerate(zip(u, v)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(u, float) and u != u:
        assert v != v, where
    else:
        assert u == v, where


def _same_sets(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        _same(x.__dict__, y.__dict__, f"set {i}")


def test_every_term_type_as_before(small_chain_table):
    """K (delay), G (pol_flags, snr, rchi2, ref_ant_hand), KC, CP, D: the same objects."""
    _, cal, _ = small_chain_table
    keys = hdf5.list_keys(cal)
    assert {k.rstrip("0123456789") for k in keys} >= {"K", "G", "KC", "CP", "D"}
    for key in keys:
        _same_sets(hdf5.read_term(cal, key), _reference_read_term(cal, key))


def test_unusual_datasets_and_layout_as_before(small_chain_table, tmp_path):
    """Datasets the layout does not write (scalar, string, empty, big-endian solver_stats; a group
    nested under a leaf group; groups with names out of order) read as h5py's ``[()]`` reads them."""
    _, cal, _ = small_chain_table
    t = str(tmp_path / "odd.h5")
    sets = hdf5.read_term(cal, "G0")
    hdf5.write_term(t, "G0", sets)
    with h5py.File(t, "a") as f:
        leaves = []
        f["G0"].visititems(lambda n, o: leaves.append(n) if isinstance(o, h5py.Group) and "jones" in o
                           else None)
        g = f["G0"][leaves[0]]
        st = g["solver_stats"]
        st.create_dataset("a_scalar", data=np.float32(2.5))
        st.create_dataset("a_string", data="text")
        st.create_dataset("empty", data=np.zeros((0, 3)))
        st.create_dataset("big_endian", data=np.arange(6, dtype=">i4").reshape(2, 3))
        f["G0"][leaves[1]].copy(f["G0"][leaves[1]], g, name="a_nested")     # a leaf under a leaf
        g.attrs["a_bytes"] = np.bytes_(b"raw")
        g.attrs["a_float_array"] = np.arange(3, dtype=np.float32)
    _same_sets(hdf5.read_term(t, "G0"), _reference_read_term(t, "G0"))
    assert len(hdf5.read_term(t, "G0")) == len(sets) + 1


def test_kept_while_unchanged_read_again_when_replaced(small_chain_table, tmp_path, monkeypatch):
    _, cal, _ = small_chain_table
    t = str(tmp_path / "t.h5")
    hdf5.write_term(t, "G0", hdf5.read_term(cal, "G0"))
    first = hdf5.read_term(t, "G0")
    r0, h0 = hdf5.TERM_STATS["reads"], hdf5.TERM_STATS["hits"]
    with hdf5.keep_terms():
        a = hdf5.read_term(t, "G0")
        b = hdf5.read_term(t, "G0")
        assert (hdf5.TERM_STATS["reads"], hdf5.TERM_STATS["hits"]) == (r0 + 1, h0 + 1)
        _same_sets(a, first)
        _same_sets(b, first)
        assert a[0].jones is not b[0].jones and a[0].attrs is not b[0].attrs   # copies
        b[0].jones[...] = 0                      # a caller's change stays its own
        b[0].attrs["field_name"] = "changed"
        _same_sets(hdf5.read_term(t, "G0"), first)
        # the file replaced (any write is an atomic replace): read again, the new values
        scaled = hdf5.read_term(t, "G0")
        for s in scaled:
            s.jones = s.jones * 2
        hdf5.write_term(t, "G0", scaled)
        reads = hdf5.TERM_STATS["reads"]
        c = hdf5.read_term(t, "G0")
        assert hdf5.TERM_STATS["reads"] == reads + 1
        np.testing.assert_array_equal(c[0].jones, first[0].jones * 2)
        # changed in place by someone else (same inode): mtime / size differ, read again
        st = os.stat(t)
        with h5py.File(t, "a") as f:
            f.attrs["touched"] = 1
        os.utime(t, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
        reads = hdf5.TERM_STATS["reads"]
        hdf5.read_term(t, "G0")
        assert hdf5.TERM_STATS["reads"] == reads + 1
    reads = hdf5.TERM_STATS["reads"]
    hdf5.read_term(t, "G0")
    hdf5.read_term(t, "G0")
    assert hdf5.TERM_STATS["reads"] == reads + 2           # outside: every call reads
    monkeypatch.setenv("ALAKAZAM_TERM_CACHE", "0")
    with hdf5.keep_terms():
        hdf5.read_term(t, "G0")
        hdf5.read_term(t, "G0")
    assert hdf5.TERM_STATS["reads"] == reads + 4           # turned off


def test_errors_unchanged(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        with hdf5.keep_terms():
            hdf5.read_term(str(tmp_path / "none.h5"), "G0")


@pytest.mark.parametrize("task", ["akexport", "akinfo"])
def test_tasks_read_each_key_once(small_chain_table, tmp_path, monkeypatch, task):
    """akexport (its parameter check, the export, its delay frame: every key of the table) and akinfo
    read each key of the table once per call."""
    import collections

    from alakazam.caltasks import akexport, akinfo

    ms, cal, _ = small_chain_table
    seen = collections.Counter()
    real = hdf5._read_term

    def counted(path, key):
        seen[key] += 1
        return real(path, key)

    monkeypatch.setattr(hdf5, "_read_term", counted)
    if task == "akexport":
        akexport(caltable=cal, jones="G1", casatable=str(tmp_path / "g1.tb"), vis=ms)
    else:
        akinfo(caltable=cal)
    assert seen["G1"] == 1 and max(seen.values()) == 1 and set(seen) <= set(hdf5.list_keys(cal))
