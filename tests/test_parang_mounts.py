"""The parallactic rotation follows each antenna's ANTENNA MOUNT, as CASA's (jones/parang.mount_kind).

Until session 59 every antenna was rotated by its parallactic angle q whatever its MOUNT: on an
equatorial array (feeds that keep their angle on the sky), Nasmyth mounts (q +- the elevation) or X-Y
mounts, ``parang=True`` rotated the data by the wrong angle -- on linear feeds that mixes XX / YY with
XY / YX, so every correlation of the corrected data was off, silently.  CASA 6.7's applycal, measured on
one MS with every mount: ALT-AZ, '' , 'alt-az', ALT-AZ+ROTATOR -> q; EQUATORIAL (any case) -> 0;
ALT-AZ+NASMYTH-R / -L -> q + el / q - el; X-Y -> atan2(-cos H, -sin H sin dec); anything else
(SPACE-HALCA, GENERIC, ALT-AZ+BWG-L ...) -> 0 with "unhandled mount type".
"""

import os
import sys

import numpy as np
import pytest

from alakazam.jones import parang

sys.path.insert(0, os.path.dirname(__file__))
from casa_python import casa_python, run_casa  # noqa: E402  (tests/casa_python.py)
from test_parang import _hour_angle, _vla  # noqa: E402  (the VLA's position, casacore's hour angle)

casacore_measures = pytest.importorskip("casacore.measures")

#: VLA-like site, 3C286, a 12-h track through its transit
RA, DEC = np.radians(202.784533), np.radians(30.509156)
T0 = 60401 * 86400.0 + 20 * 3600.0


def _elevation(times, pos):
    """casacore's elevation of 3C286 from ``pos`` at ``times`` (AZEL, of date)."""
    me = casacore_measures.measures()
    me.doframe(me.position("ITRF", *[f"{c}m" for c in pos]))
    src = me.direction("J2000", f"{RA}rad", f"{DEC}rad")
    out = []
    for t in times:
        me.doframe(me.epoch("UTC", f"{float(t)!r}s"))
        out.append(me.measure(src, "AZEL")["m1"]["value"])
    return np.array(out)


def _wrap(x):
    return np.abs(np.angle(np.exp(1j * np.asarray(x))))


def test_mount_kinds():
    k = parang.mount_kind
    assert [k(m) for m in ("ALT-AZ", "", " alt-az ", "ALT-AZ+ROTATOR")] == ["alt-az"] * 4
    assert k("EQUATORIAL") == k("equatorial") == "equatorial"
    assert (k("ALT-AZ+NASMYTH-R"), k("alt-az+nasmyth-l"), k("X-Y")) == ("nasmyth-r", "nasmyth-l", "x-y")
    assert [k(m) for m in ("SPACE-HALCA", "GENERIC", "ALT-AZ+BWG-L", "ORBITING")] == ["unknown"] * 4


def test_feed_angles_per_mount():
    """Against casacore: equatorial and unknown 0; Nasmyth q +- el (el casacore's AZEL at the antenna,
    to 2e-4 rad: aberration -- the difference between the two zenith distances -- is ~1e-4); X-Y within
    3e-3 rad of the of-date formula (ours takes J2000's hour angle and declination; 1.3e-3 measured)."""
    xyz = _vla()
    times = T0 + np.arange(-5 * 3600.0, 5 * 3600.0, 900.0)
    pos = np.array([xyz] * 6)
    mounts = ["ALT-AZ", "EQUATORIAL", "ALT-AZ+NASMYTH-R", "ALT-AZ+NASMYTH-L", "X-Y", "BIZARRE"]
    f = parang.feed_parallactic_angles(times, RA, DEC, pos, xyz, mounts)
    q = parang.antenna_parallactic_angles(times, RA, DEC, pos, xyz)
    np.testing.assert_array_equal(f[:, 0], q[:, 0])
    assert not f[:, 1].any() and not f[:, 5].any()
    el = _elevation(times, xyz)
    h, dec = _hour_angle(times, RA, DEC, xyz)
    assert _wrap(f[:, 2] - (q[:, 2] + el)).max() < 2e-4
    assert _wrap(f[:, 3] - (q[:, 3] - el)).max() < 2e-4
    xy = np.arctan2(-np.cos(h), -np.sin(h) * np.sin(dec))
    err = _wrap(f[:, 4] - xy).max()
    print(f"X-Y: max |ours (J2000) - of-date formula| {err:.2e} rad")
    assert err < 3e-3                                        # (1.3e-3 measured)
    assert _wrap(f[:, 4] - q[:, 4]).max() > 0.5            # (not the alt-az angle: the test can tell)
    # no mounts: every antenna alt-az (the call of old)
    np.testing.assert_array_equal(parang.feed_parallactic_angles(times, RA, DEC, pos, xyz), q)


MOUNTS = ["ALT-AZ", "equatorial", "X-Y", "EQUATORIAL", "ALT-AZ+NASMYTH-R", "ALT-AZ+NASMYTH-L", "GENERIC",
          "ALT-AZ"]


@pytest.fixture(scope="module")
def mount_ms(tmp_path_factory):
    """Linear feeds, no instrumental terms, 3C286 polarised; antennas of every mount (the simulator's
    active antennas are rows 0, 2-6: C00 alt-az, then X-Y, EQUATORIAL, NASMYTH-R, NASMYTH-L, GENERIC;
    rows 1 and 7, without data, 'equatorial' and ALT-AZ); DATA rotated by each mount's feed angle."""
    from alakazam.sim.simulate import simulate_ms

    d = tmp_path_factory.mktemp("mounts")
    ms = str(d / "m.ms")
    truth = simulate_ms(ms, n_ant=6, n_chan=(8,), feed="linear", duration_h=2.0, int_s=300.0,
                        scan_len_s=600.0, noise=1e-4, delays=False, bandpass=False, time_gains=False,
                        leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0, mounts=MOUNTS)
    return ms, truth


def test_simulated_mounts_and_meta(mount_ms):
    from alakazam.core import ms_io

    ms, truth = mount_ms
    meta = ms_io.read_meta(ms)
    assert meta.ant_mounts == [m.strip().upper() for m in MOUNTS]
    act = list(np.asarray(meta.active_ants))
    assert meta.active_mounts == [meta.ant_mounts[a] for a in act]
    q = truth.parang_ant["3C286"]
    kinds = [parang.mount_kind(m) for m in meta.active_mounts]
    for a, k in enumerate(kinds):
        if k in ("equatorial", "unknown"):
            assert not q[:, a].any()


def _max_cross_error(ms):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        s = t.query("FIELD_ID==0 && ANTENNA1!=ANTENNA2")
        c, m, f = s.getcol("CORRECTED_DATA"), s.getcol("MODEL_DATA"), s.getcol("FLAG")
    ok = ~f
    return float(np.abs(np.where(ok, c - m, 0)).max() / np.abs(m[..., 0]).max())


def test_apply_with_parang_recovers_the_sky(mount_ms, tmp_path, caplog):
    """G per integration solved and applied with parang: the corrected data equal the sky model in
    every correlation (cross hands included) to the noise (1e-4 of 14.9 Jy); with every antenna
    rotated by q (the code before: mount_kind patched to alt-az) they are off by up to ~the elevation's
    mixing of the hands.  The GENERIC antenna is warned about once."""
    import shutil

    from caltasks import akapply, akcal

    ms0, _ = mount_ms
    errs = {}
    for name in ("mounts", "all_altaz"):
        ms = str(tmp_path / f"{name}.ms")
        shutil.copytree(ms0, ms)
        cal = str(tmp_path / f"{name}.h5")
        patch = pytest.MonkeyPatch()
        if name == "all_altaz":
            patch.setattr(parang, "mount_kind", lambda m: "alt-az")
        try:
            caplog.clear()
            akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["int"], refant="C00", parang=True)
            akapply(vis=ms, field=["3C286"], gaintable=[cal], jones=["G0"], parang=True)
        finally:
            patch.undo()
        errs[name] = _max_cross_error(ms)
        if name == "mounts":
            said = [r.getMessage() for r in caplog.records if "ANTENNA MOUNT" in r.getMessage()]
            assert said and "'GENERIC'" in said[0] and "unhandled mount type" in said[0]
    print(f"max |CORRECTED - MODEL| / max |M|: by mount {errs['mounts']:.2e}, all alt-az "
          f"{errs['all_altaz']:.2e}")
    assert errs["mounts"] < 2e-3
    assert errs["all_altaz"] > 0.05


def test_against_casa_applycal(mount_ms, tmp_path):
    """CASA 6.7's applycal (parang=True, a unit gain table) rotates each antenna as
    feed_parallactic_angles does: each antenna's angle is found from CORRECTED and DATA of its baseline to
    the alt-az antenna C00 (the angle of the linear-feed rotation that maps one onto the other, C00's
    known), and compared with ours moved to apparent north for the turning mounts (CASA's frame,
    docs/conventions.md); 0 for equatorial and GENERIC on both sides."""
    import shutil

    from casacore.tables import table

    casa_python() or pytest.skip("CASA (casatools/casatasks) not available")
    ms0, _ = mount_ms
    ms = str(tmp_path / "casa.ms")
    shutil.copytree(ms0, ms)
    run_casa(f"""
        from casatasks import gencal, applycal
        gencal(vis={ms!r}, caltable='unit.g', caltype='amp', parameter=[1.0])
        applycal(vis={ms!r}, field='3C286', gaintable=['unit.g'], parang=True, applymode='calonly',
                 flagbackup=False, calwt=False)
        """, tmp_path)
    with table(ms, ack=False) as t:
        s = t.query("FIELD_ID==0 && ANTENNA1==0 && ANTENNA2!=0")
        d, c = s.getcol("DATA")[:, 0, :], s.getcol("CORRECTED_DATA")[:, 0, :]
        a2, tm = s.getcol("ANTENNA2"), s.getcol("TIME")
    with table(ms + "/ANTENNA", ack=False) as t:
        pos = t.getcol("POSITION")
    from alakazam.core import ms_io

    meta = ms_io.read_meta(ms)
    act = np.asarray(meta.active_ants)
    centre = np.asarray(meta.observatory)
    # CORRECTED = R(-chi_a) DATA R(-chi_b)^T with R the linear P (XX, XY, YX, YY rows): on a baseline to
    # C00 with chi_0 known, chi_b follows from the 2x2 products (the least-squares angle over a grid)
    grid = np.linspace(-np.pi, np.pi, 20001)
    got = {}
    for i in range(len(tm)):
        q0 = parang.feed_parallactic_angles(np.array([tm[i]]), RA, DEC, pos[act], centre,
                                            meta.active_mounts)[0]
        b = int(np.where(act == a2[i])[0][0])
        V = d[i].reshape(2, 2)
        C = c[i].reshape(2, 2)
        P0 = parang.parang_matrices(np.array(q0[0] + _app_offset(tm[i], centre)), "linear")
        Ps = parang.parang_matrices(grid, "linear")
        # C = P0^-1 V Pb^-H  ->  P0 C Pb^H = V: pick the grid angle that fits best
        lhs = np.einsum("ij,jk->ik", P0, C)
        fit = np.einsum("ij,gkj->gik", lhs, np.conj(Ps))
        chi = grid[np.argmin(np.abs(fit - V).sum(axis=(1, 2)))]
        kind = parang.mount_kind(meta.active_mounts[b])
        ours = q0[b] + (_app_offset(tm[i], centre) if kind in ("alt-az", "nasmyth-r", "nasmyth-l") else 0.0)
        got.setdefault(kind, []).append(float(_wrap(chi - ours)))
    print({k: f"{max(v):.1e}" for k, v in got.items()})
    for k, v in got.items():
        assert max(v) < (3e-3 if k == "x-y" else 1e-3), k     # x-y: 8e-4 measured
    assert set(got) >= {"equatorial", "nasmyth-r", "nasmyth-l", "x-y", "unknown"}


def _app_offset(t, centre):
    """3C286's parallactic angle from APPARENT north minus that from J2000 north at ``t`` (casacore)."""
    me = casacore_measures.measures()
    me.doframe(me.position("ITRF", *[f"{c}m" for c in centre]))
    me.doframe(me.epoch("UTC", f"{float(t)!r}s"))
    src = me.direction("J2000", f"{RA}rad", f"{DEC}rad")
    z = me.direction("AZEL", "0deg", "90deg")
    return (me.posangle(me.measure(src, "APP"), me.measure(z, "APP")).get_value("rad")
            - me.posangle(src, me.measure(z, "J2000")).get_value("rad"))


def test_equatorial_array_pol_terms_are_warned(tmp_path, solve_warnings):
    """An array of EQUATORIAL mounts (WSRT-like) never turns its feeds against the sky: CP and D on a
    polarised calibrator cannot be told from its polarisation however many scans are solved (review
    59d: CP 32 deg off, unwarned -- the coverage check took the array centre's parallactic angle,
    which covered 147 deg).  Warned now, naming the mounts; the same MS with ALT-AZ mounts is not."""
    from alakazam.sim.simulate import simulate_ms

    block = dict(ref_ant="C00", apply_parang=True, jones=["G", "KC", "CP", "D"], field=["3C286"],
                 time_interval=["inf"] * 4, freq_interval=["full"] * 4)
    got = {}
    for mount in ("EQUATORIAL", "ALT-AZ"):
        ms = str(tmp_path / f"{mount}.ms")
        simulate_ms(ms, feed="linear", n_ant=6, n_chan=(4,), duration_h=3.0, int_s=120.0, scan_len_s=600.0,
                    noise=0.01, seed=31, flag_rows=0.0, dead_ant=False, delays=False, bandpass=False,
                    time_gains=False, mounts=[mount] * 8)
        out = str(tmp_path / f"{mount}.h5")
        got[mount] = solve_warnings("keep the feeds at one angle", ms=ms, output=out, **block)
    assert got["ALT-AZ"] == []
    assert got["EQUATORIAL"] and got["EQUATORIAL"][0].startswith("CP0 (CP) on 3C286"), got
    assert "EQUATORIAL" in got["EQUATORIAL"][0] and "unpolarised" in got["EQUATORIAL"][0]


def test_simulator_mounts_are_checked(tmp_path):
    from alakazam.errors import AlakazamError
    from alakazam.sim.simulate import simulate_ms

    for bad in ("ALT-AZ", [None] * 8, ["ALT-AZ"] * 3):
        with pytest.raises(AlakazamError, match="mounts"):
            simulate_ms(str(tmp_path / "x.ms"), n_ant=6, mounts=bad)
    assert not os.path.exists(tmp_path / "x.ms")


@pytest.mark.parametrize("parang_on", [True, False])
def test_equatorial_absolute_gauge_refusal_names_the_mounts(tmp_path, parang_on):
    """leakage_gauge 'absolute' on an all-EQUATORIAL array is refused (the data never fix it); the error
    says why: the mounts, not apply_parang or the parallactic range (review 59d: it blamed those)."""
    from alakazam.config import solve_config_from_dict
    from alakazam.errors import ParameterError
    from alakazam.flow import run_solve
    from alakazam.sim.simulate import simulate_ms

    ms = str(tmp_path / "e.ms")
    simulate_ms(ms, feed="linear", n_ant=6, n_chan=(4,), duration_h=3.0, int_s=120.0, scan_len_s=600.0,
                noise=0.01, seed=31, flag_rows=0.0, dead_ant=False, delays=False, bandpass=False,
                time_gains=False, mounts=["EQUATORIAL"] * 8)
    with pytest.raises(ParameterError, match="leakage_gauge") as e:
        run_solve(solve_config_from_dict(dict(
            ms=ms, output=str(tmp_path / "c.h5"), ref_ant="C00", apply_parang=parang_on,
            jones=["G", "KC", "CP", "D"], field=["3C286"], time_interval=["inf"] * 4, combine=["scan"] * 4,
            freq_interval=["full"] * 4, leakage_gauge="absolute", quiet=True)))
    assert "mounts (EQUATORIAL) keep the feeds at one angle" in str(e.value)
    assert "set apply_parang: true" not in str(e.value)


def test_mixed_mounts_warn_the_polarisation_solves(tmp_path, solve_warnings):
    """KC / CP / D on an array mixing mount kinds (alt-az and Nasmyth): not validated (review 60i: one
    round 36-69x the noise off, three rounds unconverged) -- warned before the reads, naming the kinds and
    antennas; with linear feeds and the parallactic angle a gain alone is warned too; one kind (every
    antenna Nasmyth) is silent."""
    from alakazam.sim.simulate import simulate_ms

    block = dict(ref_ant="C00", apply_parang=True, jones=["G", "KC", "CP"], field=["3C286"],
                 time_interval=["inf"] * 3, freq_interval=["full"] * 3)
    cases = {"mixed": ["ALT-AZ"] * 4 + ["ALT-AZ+NASMYTH-R"] * 4, "one": ["ALT-AZ+NASMYTH-R"] * 8}
    got = {}
    for name, mounts in cases.items():
        ms = str(tmp_path / f"{name}.ms")
        # (no leakage: with it, the mixed array's G alone did not converge -- its leakage of I sin(chi_a -
        # chi_b) into the parallel hands; an open item of review 60i)
        simulate_ms(ms, feed="linear", n_ant=6, n_chan=(4,), duration_h=1.0, int_s=120.0, scan_len_s=600.0,
                    noise=0.01, seed=31, flag_rows=0.0, dead_ant=False, delays=False, bandpass=False,
                    time_gains=False, leakage=False, mounts=mounts)
        got[name] = solve_warnings("mixes mounts", ms=ms, output=str(tmp_path / f"{name}.h5"), **block)
    assert got["one"] == []
    assert len(got["mixed"]) == 1, got
    m = got["mixed"][0]
    assert m.startswith("KC0 (KC), CP0 (CP): the array mixes mounts (alt-az: C00, "), m
    assert "; nasmyth-r: C04, " in m, m
    assert "not validated" in m and "first order" in m
    # linear feeds with the parallactic angle: a gain alone is warned too (its leakage of I)
    ms = str(tmp_path / "mixed.ms")
    g = solve_warnings("mixes mounts", ms=ms, output=str(tmp_path / "g.h5"), ref_ant="C00",
                       apply_parang=True, jones=["G"], field=["3C286"], time_interval=["inf"],
                       freq_interval=["full"])
    assert len(g) == 1 and g[0].startswith("G0 (G): the array mixes mounts"), g


def test_mixed_mounts_silent_when_the_selection_keeps_one_kind(tmp_path, solve_warnings):
    """The mixed-mount warning's remedy, an antenna selection of one mount kind ('!C04;!C05' on
    linear feeds), silences it: before, it was said over the MS's antennas, naming the deselected
    Nasmyth antennas (review h60j).  A selection keeping their baselines (CASA's 'C00,C02' selects
    every baseline with C00 or C02) is still warned."""
    from alakazam.sim.simulate import simulate_ms

    mounts = ["ALT-AZ"] * 6 + ["ALT-AZ+NASMYTH-R"] * 4
    ms = str(tmp_path / "m.ms")
    simulate_ms(ms, feed="linear", n_ant=8, n_chan=(4,), duration_h=1.0, int_s=120.0, scan_len_s=600.0,
                noise=0.01, seed=31, flag_rows=0.0, dead_ant=False, delays=False, bandpass=False,
                time_gains=False, leakage=False, mounts=mounts)
    block = dict(ref_ant="C00", apply_parang=True, jones=["G", "KC", "CP"], field=["3C286"],
                 time_interval=["inf"] * 3, freq_interval=["full"] * 3)
    from alakazam.core import ms_io

    meta = ms_io.read_meta(ms)
    nas = [meta.ant_names[a] for a, m in zip(meta.active_ants, meta.active_mounts) if "NASMYTH" in m]
    alt = [meta.ant_names[a] for a, m in zip(meta.active_ants, meta.active_mounts) if "NASMYTH" not in m]
    assert nas and len(alt) >= 4, (nas, alt)
    one = ";".join(f"!{n}" for n in nas)
    assert solve_warnings("mixes mounts", ms=ms, output=str(tmp_path / "a.h5"), antenna=one, **block) == []
    w = solve_warnings("mixes mounts", ms=ms, output=str(tmp_path / "b.h5"), antenna=",".join(alt), **block)
    assert len(w) == 1, w
