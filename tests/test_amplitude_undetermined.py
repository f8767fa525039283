"""Gain amplitudes that the baselines do not determine (solvers/quality.py, "Undetermined amplitudes").

One baseline measures only |g_a| |g_b|: an amplitude + phase (or amplitude-only) G / T solve on an array
of two antennas was flagged whole as "minsnr ... SNR below minsnr (lower minsnr, or lengthen solint)"
although the SNR per sample was ~300 (nDOF <= 0 gave SNR 0), and T, whose DOF count stayed positive,
stored one arbitrary split of the amplitudes unflagged.  The step now names the degeneracy; phase-only
solves of the same data and amplitude solves on three antennas are unchanged.
"""

import itertools

import h5py
import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms
from alakazam.solvers import quality


def _ms(tmp_path_factory, n_ant):
    d = tmp_path_factory.mktemp(f"ants{n_ant}")
    ms = str(d / f"a{n_ant}.ms")
    truth = simulate_ms(ms, n_ant=n_ant, n_ant_extra=0, n_chan=(8,), feed="circular", duration_h=0.5,
                        time_gains=False, delays=False, leakage=False, crosshand=False,
                        parang_in_data=False, dead_ant=False, seed=3)
    return ms, truth


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return _ms(tmp_path_factory, 2)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return _ms(tmp_path_factory, 3)


def _akcal(ms, cal, **kw):
    args = dict(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["2min"], refant="C00",
                minblperant=1)
    args.update(kw)
    return akcal(**args)


@pytest.mark.parametrize("jones,calmode,minsnr", [("G", "ap", 3.0), ("G", "a", 3.0), ("G", "ap", 0.0),
                                                  ("T", "ap", 3.0)])
def test_two_antennas_amplitude_solve_names_the_degeneracy(two, tmp_path, jones, calmode, minsnr):
    ms, _ = two
    cal = str(tmp_path / "two.h5")
    with pytest.raises(AlakazamError, match="every solution is flagged") as e:
        _akcal(ms, cal, jones=[jones], calmode=[calmode], minsnr=minsnr)
    msg = str(e.value)
    assert "amplitude_undetermined flagged" in msg
    assert "not determined by the baselines" in msg and "calmode='p'" in msg
    assert "minsnr" not in msg and "SNR below" not in msg


def test_two_antennas_phase_only_still_solves(two, tmp_path):
    ms, _ = two
    cal = str(tmp_path / "p.h5")
    _akcal(ms, cal, calmode=["p"])
    with h5py.File(cal, "r") as f:
        flags = [f[k][()] for k in _datasets(f, "flags")]
    assert not np.concatenate([x.ravel() for x in flags]).any()


def _datasets(f, name):
    out = []
    f.visit(lambda k: out.append(k) if k.endswith("/" + name) else None)
    return out


def test_three_antennas_minblperant_1_amplitude_solve_at_the_noise(three, tmp_path):
    """A triangle determines every amplitude: a per-channel amplitude + phase G on three antennas with
    minblperant=1 is unflagged and matches the simulated bandpass to its thermal error."""
    ms, truth = three
    cal = str(tmp_path / "three.h5")
    _akcal(ms, cal, calmode=["ap"], freqint=["1MHz"])
    bp = truth.bandpass[0]                                  # (n_ant, n_chan, 2)
    n = 0
    with h5py.File(cal, "r") as f:
        for k in _datasets(f, "jones"):
            grp = f[k.rsplit("/", 1)[0]]
            g = np.stack([grp["jones"][..., 0, 0], grp["jones"][..., 1, 1]], axis=-1)   # (ant, f, t, 2)
            snr = grp["solver_stats/snr"][()]
            assert not grp["flags"][()].any()
            assert (snr > 30).all()
            # the thermal error from the weights (k2 = 1): three baselines leave a cell 2 DOF, too few
            # for chi2 / nDOF to be a steady estimate of the noise
            snr = snr * np.sqrt(np.minimum(grp["solver_stats/rchi2"][()], 1.0))[None, :, :, None]
            # amplitudes (free of the phase reference) within 5 thermal errors (|g| / SNR)
            amp_err = np.abs(np.abs(g) - np.abs(bp)[:, :, None, :])
            assert (amp_err < 5 * np.abs(g) / snr).all(), amp_err.max()
            ph = np.angle(g * np.conj(g[:1]) * np.conj(bp[:, :, None, :] * np.conj(bp[:1, :, None, :])))
            assert (np.abs(ph) < 5 * np.sqrt(2) / snr).all(), np.abs(ph).max()
            n += 1
    assert n > 0


def test_three_antennas_one_baseline_flagged_flags_those_cells_as_undetermined(three, tmp_path):
    """Baseline C01-C02 flagged in the first 5 minutes: in those cells the two remaining baselines form
    a star (no triangle), so the amplitudes there are flagged as undetermined (they were 'minsnr'), and
    the rest of the scan solves."""
    import shutil

    from casacore.tables import table

    ms = str(tmp_path / "star.ms")
    shutil.copytree(three[0], ms)
    with table(ms, readonly=False, ack=False) as t:
        a1, a2, tm, fl = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("TIME"), t.getcol("FLAG")
        fl[(a1 == 1) & (a2 == 2) & (tm < tm.min() + 300.0)] = True
        t.putcol("FLAG", fl)
    summ = _akcal(ms, str(tmp_path / "star.h5"), calmode=["ap"])
    g0 = summ["terms"]["G0"]
    reasons = g0["flag_reasons"]
    assert reasons["amplitude_undetermined"] == g0["flagged"] == 6       # 2 cells x 3 antennas
    assert reasons["minsnr"] == 0 and g0["flagged"] < g0["n_solutions"]


def _graph(n_ant, baselines):
    bls = list(itertools.combinations(range(n_ant), 2))
    a1 = np.array([b[0] for b in bls])
    a2 = np.array([b[1] for b in bls])
    return np.array([[b in baselines for b in bls]]), a1, a2


@pytest.mark.parametrize("n_ant,baselines,expected", [
    (4, list(itertools.combinations(range(4), 2)), [0, 0, 0, 0]),      # every baseline
    (4, [(0, 1)], [1, 1, 0, 0]),                                        # one baseline (2 and 3: no data)
    (3, [(0, 1), (0, 2)], [1, 1, 1]),                                   # a star: no triangle
    (4, [(0, 1), (1, 2), (2, 3), (0, 3)], [1, 1, 1, 1]),                # an even cycle
    (4, [(0, 1), (1, 2), (0, 2), (2, 3)], [0, 0, 0, 0]),                # a triangle and a pendant
    (5, [(0, 1), (1, 2), (0, 2), (3, 4)], [0, 0, 0, 1, 1]),             # a triangle and a lone baseline
    (4, [], [0, 0, 0, 0]),                                              # no data
])
def test_amplitude_undetermined_graphs(n_ant, baselines, expected):
    bl, a1, a2 = _graph(n_ant, baselines)
    got = quality.amplitude_undetermined(bl, a1, a2, n_ant)
    np.testing.assert_array_equal(got[0], np.array(expected, bool))


def _bipartite_reference(row, a1, a2, n_ant):
    """Per antenna: its component of baselines is two-coloured without conflict (no odd cycle)."""
    adj = {i: [] for i in range(n_ant)}
    for k in np.flatnonzero(row):
        adj[a1[k]].append(a2[k])
        adj[a2[k]].append(a1[k])
    out, colour = np.zeros(n_ant, bool), {}
    for s in range(n_ant):
        if s in colour or not adj[s]:
            continue
        colour[s], comp, todo, odd = 0, [s], [s], False
        while todo:
            x = todo.pop()
            for y in adj[x]:
                if y not in colour:
                    colour[y] = 1 - colour[x]
                    comp.append(y)
                    todo.append(y)
                elif colour[y] == colour[x]:
                    odd = True
        out[comp] = not odd
    return out


@pytest.mark.parametrize("n_ant", [3, 4, 5, 7])
def test_amplitude_undetermined_random_graphs(n_ant):
    rng = np.random.default_rng(n_ant)
    bl, a1, a2 = _graph(n_ant, [])
    bl = rng.random((400, bl.shape[1])) < rng.uniform(0.1, 0.9, (400, 1))
    got = quality.amplitude_undetermined(bl, a1, a2, n_ant)
    ref = np.array([_bipartite_reference(r, a1, a2, n_ant) for r in bl])
    np.testing.assert_array_equal(got, ref)
    assert ref.any() and not ref.all()


def test_flag_reasons_name_the_yaml_keys_too():
    """The reasons a solve gives for flagged solutions named akcal's parameters only ("lower minblperant")
    in a YAML run, whose key is min_bl_per_ant (a review with 4 antennas): each akcal parameter a reason
    names comes with its YAML key."""
    import re

    from alakazam.caltasks import TASKS
    from alakazam.flow import _FLAG_REASONS

    yaml_of = {p.name: p.yamlkey for p in TASKS["akcal"].spec.params if p.yamlkey}
    for reason, text in _FLAG_REASONS.items():
        for name in set(re.findall(r"[a-z_]+", text)) & set(yaml_of):
            key = yaml_of[name].split(".")[-1]
            if key != name:
                assert key in text, (reason, name, key)
