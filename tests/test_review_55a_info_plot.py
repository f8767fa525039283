"""Review 55a: akinfo's caltable summary and akplot on hand-edited or foreign tables."""

import numpy as np

from alakazam.io import hdf5
from alakazam.io.hdf5 import SolutionSet


def _set(scan=1, spw=0, t0=5e9, n_ant=4, n_f=1, n_t=1, jt="K", field="3C286"):
    rng = np.random.default_rng(10 * scan + spw)
    j = np.zeros((n_ant, n_f, n_t, 2, 2), complex)
    j[..., 0, 0] = np.exp(1j * rng.normal(size=(n_ant, n_f, n_t)))
    j[..., 1, 1] = np.exp(1j * rng.normal(size=(n_ant, n_f, n_t)))
    return SolutionSet(
        jones=j, flags=np.zeros((n_ant, n_f, n_t), bool), time=t0 + np.arange(n_t) * 60.0,
        freq=1.4e9 + spw * 0.1e9 + np.arange(n_f) * 1e6,
        delay=rng.normal(size=(n_ant, n_f, n_t, 2)) if jt in ("K", "KC") else None,
        converged=np.ones((n_f, n_t), bool), n_iter=np.full((n_f, n_t), 7), cost=np.ones((n_f, n_t)),
        attrs=dict(jones_type=jt, field_name=field, scan_id=scan, spw=spw, n_ant=n_ant, field_ra=1.0,
                   field_dec=0.5, matrix_form="diagonal", ref_ant=0, ref_ant_name="C00",
                   ant_names=[f"C{i:02d}" for i in range(n_ant)], solint_s=60.0, freqint_hz=1e6,
                   phase_only=False, feed_basis="linear", solver_backend="numba", apply_parang=False,
                   ms="x.ms", preapply_chain=[]))


def test_summary_spws_of_a_scan_in_ascending_order(tmp_path):
    """A K's time is its data's mean time, which differs per SPW: spw 1 a little earlier than spw 0
    listed spw 1 first in that scan.  listobs's order: scans in time order, SPWs ascending."""
    p = str(tmp_path / "k.h5")
    sets = []
    for scan, t in ((1, 5e9), (4, 5e9 + 1800), (10, 5e9 + 5400), (7, 5e9 + 3600)):
        sets += [_set(scan, 0, t + 0.4), _set(scan, 1, t + 0.1 * (scan % 2))]   # spw 1 earlier in 1, 7
    hdf5.write_term(p, "K0", sets)
    order = [(r["scan"], r["spw"]) for r in hdf5.summary(p)]
    assert order == [(1, 0), (1, 1), (4, 0), (4, 1), (7, 0), (7, 1), (10, 0), (10, 1)], order
