"""Test helpers: a K + G solve block on 3C286, its tables compared exactly, and a YAML run of two such
blocks (K, G then G with K0 pre-applied), optionally followed by an apply."""

import numpy as np

from alakazam.config import solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.io import hdf5


def solve_kg(ms, out, **kw):
    """run_solve of K(scan) + G(inf) on 3C286 with C00 as reference; keyword arguments override."""
    d = dict(ms=ms, output=out, ref_ant="C00", jones=["K", "G"], field=["3C286"],
             time_interval=["scan", "inf"], freq_interval=["full", "full"], quiet=True)
    d.update(kw)
    return run_solve(solve_config_from_dict(d))


def terms(path):
    """{key: [SolutionSet]} of an HDF5 table."""
    return {k: hdf5.read_term(path, k) for k in hdf5.list_keys(path)}


def assert_same_terms(a, b):
    """The same keys, and bit-identical Jones and flags per (SPW, scan) set."""
    def order(sets):
        return sorted(sets, key=lambda s: (s.spw, s.scan_id))

    assert list(a) == list(b)
    for k in a:
        for x, y in zip(order(a[k]), order(b[k])):
            assert np.array_equal(x.jones, y.jones, equal_nan=True) and np.array_equal(x.flags, y.flags)


def two_block_yaml(path, ms, tables_dir, apply=False):
    """Write a YAML file: solve K, G -> a.h5; solve G (K0 pre-applied) -> b.h5; with ``apply`` an apply
    of K0 and G0 of both tables."""
    d = tables_dir
    text = f"""
solve:
  - ms: {ms}
    output: {d / 'a.h5'}
    ref_ant: C00
    jones: [K, G]
    field: [3C286]
    time_interval: [scan, inf]
    freq_interval: [full, full]
    quiet: true
  - ms: {ms}
    output: {d / 'b.h5'}
    ref_ant: C00
    jones: [G]
    field: [3C286]
    time_interval: [60s]
    external_preapply:
      tables: [{d / 'a.h5'}]
      jones: [K0]
    quiet: true
"""
    if apply:
        text += f"""apply:
  - ms: {ms}
    tables: [{d / 'a.h5'}, {d / 'b.h5'}]
    jones: [K0, G0]
    quiet: true
"""
    path.write_text(text)
    return path


def tiny_g_table(d):
    """(ms, cal) under directory ``d``: a 4-antenna, 4-channel, 0.5 h simulated MS and a G(scan) table
    on 3C286 (the YAML preflight tests' inputs)."""
    from alakazam.sim import simulate_ms

    ms, cal = str(d / "sim.ms"), str(d / "cal.h5")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.5, noise=0.05, seed=1, leakage=False,
                dead_ant=False)
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["G"], field=["3C286"],
                                          time_interval=["scan"], quiet=True)))
    return ms, cal


def write_yaml(tmp_path, doc):
    """``doc`` written as ``tmp_path``/cal.yaml; its path (str)."""
    import yaml

    y = tmp_path / "cal.yaml"
    y.write_text(yaml.safe_dump(doc))
    return str(y)
