"""A G solved after a per-scan K is interpolated in the frame of that K (calibration/delayframe.py).

Our K is referenced to the absolute frequency, so each scan's G absorbs that scan's delay error times the
frequency; a target between two calibrator scans took one scan's K with a G interpolated towards the next
scan's and its phases were off by several times the noise (a review against simulated truth)."""

import os

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration import chain, delayframe
from alakazam.caltasks import akapply, akcal


def _target_phase_rms(ms, cal, interp, gain="G0"):
    akapply(vis=ms, gaintable=[cal, cal], jones=["K0", gain], interp=interp, field="TARGET")
    with table(ms, ack=False) as t:
        q = t.query("FIELD_ID==2")
        c = q.getcol("CORRECTED_DATA")[..., [0, 3]]
        q.close()
    ph = np.angle(c.mean(axis=(1, 2)))        # each row's average phase; the truth is 0 (a 0.7 Jy point)
    return float(np.sqrt((ph ** 2).mean()))


def test_target_between_scans_at_the_noise(constant_gains, monkeypatch):
    """K per scan + G(2 min) linear in time: the TARGET's row phases as with one K for the whole run
    (the control: no scan-to-scan delay noise), where they were 5x the control without the frame."""
    ms, cals = constant_gains
    control = _target_phase_rms(ms, cals["inf"], ["nearest", "linear"])
    after = _target_phase_rms(ms, cals["scan"], ["nearest", "linear"])
    nearest = _target_phase_rms(ms, cals["scan"], ["nearest", "nearest"])
    monkeypatch.setattr(delayframe, "k_terms_for", lambda *a: [])
    before = _target_phase_rms(ms, cals["scan"], ["nearest", "linear"])
    print(f"row phase rms: control {control:.4f}, per-scan K {after:.4f} (without the frame {before:.4f}), "
          f"nearest {nearest:.4f}")
    assert before > 3 * control                     # the defect, as measured (0.066 vs 0.0126 rad)
    assert after < 1.15 * control and nearest < 1.15 * control


def test_unchanged_at_the_solution_times_and_for_a_g_over_all_scans(constant_gains):
    """At G's own solution times (where K is that scan's) the chain's product is the one without the
    frame, to rounding; a G whose sets span several scans (solint inf) is not touched."""
    ms, cals = constant_gains
    k = chain.load_term(cals["scan"], "K0")
    g = chain.load_term(cals["scan"], "G0", time_interp="linear")
    assert delayframe.k_terms_for(g, [k, g]) == [k]
    s = g.sets[0]
    names = [str(x) for x in s.attrs["ant_names"]]
    freqs = np.linspace(1.0e9, 1.1e9, 16)
    times = np.concatenate([x.time for x in g.sets if x.field_name == "3C147"])
    args = (0, times, freqs, names, "3C147", (float(s.attrs["field_ra"]), float(s.attrs["field_dec"])))
    framed, _ = chain.compose([k, g], *args)
    g_plain = chain.load_term(cals["scan"], "G0", time_interp="linear")
    for x in g_plain.sets:                                      # as if not solved after K
        x.attrs = dict(x.attrs, preapply_chain=[])
    assert delayframe.k_terms_for(g_plain, [k, g_plain]) == []
    plain, _ = chain.compose([k, g_plain], *args)
    ok = np.isfinite(plain)
    assert np.array_equal(ok, np.isfinite(framed)) and ok.mean() > 0.9
    assert np.allclose(framed[ok], plain[ok], rtol=1e-12, atol=1e-12)
    # a G with a set spanning several scans (scan_id 0: solint inf over scans, e.g. a bandpass) absorbed
    # several Ks' phases: the frame does not apply to it in that SPW
    import copy

    g2 = chain.load_term(cals["scan"], "G0", time_interp="linear")
    span = copy.copy(g2.sets[0])
    span.attrs = dict(span.attrs, scan_id=0)
    g2.sets = [span] + g2.sets[1:]
    assert delayframe.k_terms_for(g2, [k, g2]) == [k] and delayframe.k_terms_for(g2, [k, g2], 0) == []
    plain2, _ = chain.compose([k, g2], *args)
    with_span, _ = chain.compose([k, g_plain], *args)
    assert np.array_equal(np.isfinite(plain2), np.isfinite(with_span))


def test_a_bandpass_over_all_scans_is_left_and_the_chain_unchanged_at_solution_times(constant_gains):
    """K(scan) + bandpass G(inf over scans) + G(2 min): the bandpass (a set spanning scans) is not framed,
    and at the 2-min G's solution times the chain's product is the one without the frame, to rounding."""
    ms, cals = constant_gains
    k = chain.load_term(cals["kbg"], "K0")
    b = chain.load_term(cals["kbg"], "G0")
    g = chain.load_term(cals["kbg"], "G1", time_interp="linear")
    assert delayframe.k_terms_for(b, [k, b, g], 0) == [] and delayframe.k_terms_for(g, [k, b, g], 0) == [k]
    s = g.sets[0]
    times = np.concatenate([x.time for x in g.sets])
    freqs = np.asarray(b.sets[0].freq)
    args = (0, times, freqs, [str(x) for x in s.attrs["ant_names"]], "3C147",
            (float(s.attrs["field_ra"]), float(s.attrs["field_dec"])))
    framed, _ = chain.compose([k, b, g], *args)
    import unittest.mock as um

    with um.patch.object(delayframe, "k_terms_for", lambda *a: []):
        plain, _ = chain.compose([k, b, g], *args)
    ok = np.isfinite(plain)
    assert np.array_equal(ok, np.isfinite(framed)) and ok.mean() > 0.9
    assert np.allclose(framed[ok], plain[ok], rtol=1e-12, atol=1e-12)


def test_the_kept_preapply_product_frames_as_the_per_block_path(constant_gains, tmp_path, monkeypatch):
    """A step pre-applying K(scan) and a G(2 min) solved after it (linear pre-apply): the solve's kept
    pre-apply product (extended term by term, calibration/preapply_cache.py) evaluates the G in K's frame
    as compose does on each block (frame_terms): the same solutions bit for bit.  (On the calibrator's
    own rows the G is interpolated within each scan, where the frame changes nothing but rounding.)"""
    from alakazam.calibration import preapply_cache
    from alakazam.io import hdf5

    ms, _ = constant_gains

    def solve(out):
        akcal(vis=ms, caltable=out, field="3C147", jones=["K", "G", "G"], solint=["scan", "2min", "inf"],
              freqint=["full", "full", "1MHz"], refant="C00", preapply_interp="linear")
        return hdf5.read_term(out, "G1")

    kept = solve(str(tmp_path / "kept.h5"))
    k = chain.load_term(str(tmp_path / "kept.h5"), "K0")
    g = chain.load_term(str(tmp_path / "kept.h5"), "G0", time_interp="linear")
    assert delayframe.k_terms_for(g, [k, g], 0) == [k]          # the pre-applied G0 is framed
    with monkeypatch.context() as m:
        m.setattr(preapply_cache, "usable", lambda *a: False)
        per_block = solve(str(tmp_path / "block.h5"))
    assert len(kept) == len(per_block) > 0
    for a, b in zip(kept, per_block):
        np.testing.assert_array_equal(a.flags, b.flags)
        np.testing.assert_array_equal(a.jones, b.jones)


@pytest.mark.parametrize("case", [("T", "T0", "linear"), ("F", "G0", "linear,linear"),
                                  ("F", "G0", "linear,nearest"), ("F", "G0", "linear,linearflag")])
def test_t_and_frequency_interpolation_between_scans(constant_gains, monkeypatch, case):
    """A T after K(scan), and a G of 4-channel bins after K(scan) applied with a frequency
    interpolation: the TARGET's row phases as with one K for the whole run (0.0665 rad against 0.0126
    before, session 34).  For 'time,freq' the frame comes off at G's bins, before the interpolation
    across them: taken at the channels, a 'nearest' bin would keep the whole delay times the channel's
    offset from its bin."""
    ms, cals = constant_gains
    suffix, gain, interp = case
    control = _target_phase_rms(ms, cals["inf" + suffix], ["nearest", interp], gain)
    after = _target_phase_rms(ms, cals["scan" + suffix], ["nearest", interp], gain)
    monkeypatch.setattr(delayframe, "k_terms_for", lambda *a: [])
    before = _target_phase_rms(ms, cals["scan" + suffix], ["nearest", interp], gain)
    print(f"{case}: control {control:.4f}, per-scan K {after:.4f} (without the frame {before:.4f})")
    assert before > 3 * control
    assert after < 1.15 * control


@pytest.mark.parametrize("fmode", ["linear", "nearest", "linearflag", "nearestflag"])
def test_frequency_interpolation_unchanged_at_the_solution_times(constant_gains, fmode):
    """At G's own solution times the framed 'time,freq' evaluation is the plain one to rounding, flagged
    bins (one antenna's bin in one hand, one bin of every antenna) bridged or flagged alike."""
    ms, cals = constant_gains
    k = chain.load_term(cals["scanF"], "K0")

    def g_term(framed):
        g = chain.load_term(cals["scanF"], "G0", time_interp="linear")
        g.freq_interp = fmode
        for x in g.sets:
            x.jones = np.array(x.jones)
            x.flags = np.array(x.flags)
            x.jones[1, 1, :, 0, 0] = np.nan          # C01, bin 1, hand p
            x.jones[:, 2] = np.nan                   # bin 2 of every antenna
            x.flags[:, 2] = True
            if x.pol_flags is not None:
                x.pol_flags = np.array(x.pol_flags)
                x.pol_flags[1, 1, :, 0] = True
                x.pol_flags[:, 2] = True
            if not framed:
                x.attrs = dict(x.attrs, preapply_chain=[])
        return g

    g, g_plain = g_term(True), g_term(False)
    assert delayframe.k_terms_for(g, [k, g], 0) == [k] and delayframe.k_terms_for(g_plain, [k, g_plain]) == []
    s = g.sets[0]
    freqs = np.arange(1.300e9, 1.316e9, 1e6)
    times = np.concatenate([x.time for x in g.sets])
    args = (0, times, freqs, [str(x) for x in s.attrs["ant_names"]], "3C147",
            (float(s.attrs["field_ra"]), float(s.attrs["field_dec"])))
    framed, _ = chain.compose([k, g], *args)
    plain, _ = chain.compose([k, g_plain], *args)
    ok = np.isfinite(plain)
    assert np.array_equal(ok, np.isfinite(framed)) and ok.mean() > 0.3      # linearflag: 0.46
    assert (ok.mean() < 1) == fmode.endswith("flag")          # bridged, or flagged
    assert np.allclose(framed[ok], plain[ok], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k_interp", ["nearest", "linear"])
def test_frame_factor_per_distinct_frequency_equals_term_tables_per_channel(constant_gains, k_interp):
    """The K frame factor is evaluated once per distinct frequency (diag_table for a nearest K,
    term_tables for a linear one): bit for bit the diagonal of term_tables on every frequency asked,
    repeated frequencies (a one-bin G asks for its bin at every channel) and unsorted ones included,
    with 1 where K is flagged; the framed one-bin G keeps a channel axis of 1 (the same values as the
    full-size evaluation)."""
    ms, cals = constant_gains
    k = chain.load_term(cals["scan"], "K0", time_interp=k_interp)
    s = chain.load_term(cals["scan"], "G0").sets[0]
    names = [str(x) for x in s.attrs["ant_names"]]
    times = np.concatenate([x.time for x in k.sets])
    times = np.sort(np.concatenate([times, times[:-1] + 0.4 * np.diff(times)]))
    radec = (float(s.attrs["field_ra"]), float(s.attrs["field_dec"]))
    freqs = np.array([1.05e9, 1.0e9, 1.05e9, 1.05e9, 1.1e9, 1.0e9])
    got = delayframe._diag_factor([k], 0, times, freqs, names, "3C147", radec, None)
    j, _, _ = chain.term_tables(k, 0, times, freqs, names, "3C147", radec, True)
    d = np.stack([j[..., 0, 0], j[..., 1, 1]], axis=-1)
    want = np.where(np.isfinite(d), d, 1.0)
    assert got.shape == want.shape and (np.abs(np.angle(want)) > 1e-3).any()
    np.testing.assert_array_equal(got.view(np.float64), want.view(np.float64))
    # the framed one-bin G in compose: channel axis 1 inside, the full-size evaluation's values outside
    g = chain.load_term(cals["scan"], "G0", time_interp="linear")
    assert delayframe.k_terms_for(g, [k, g]) == [k]
    ch = np.linspace(1.0e9, 1.1e9, 16)
    diag, _ = chain.compose([g], 0, times, ch, names, "3C147", radec, frame_terms=[k, g], full=False)
    assert diag.shape[2] == 1
    full, _ = chain.compose([g], 0, times, ch, names, "3C147", radec, frame_terms=[k, g])
    np.testing.assert_array_equal(np.broadcast_to(diag, full.shape), full)


def test_k_applied_with_linear_interp_frames_g_as_the_solve_applied_k(constant_gains):
    """The frame evaluates K at G's solution times with the interpolation the solve pre-applied K with
    (attr ``preapply_interp``; 'nearest', the default): an apply of K with 'linear' (CASA's default)
    blended two scans' delays there, and the targets' phases were 2-9x the noise (a review).  Now the
    target with K linear is at the noise, as with K nearest."""
    ms, cals = constant_gains
    g = chain.load_term(cals["scan"], "G0")
    assert list(g.sets[0].attrs["preapply_interp"]) == ["nearest"]
    nearest = _target_phase_rms(ms, cals["scan"], ["nearest", "linear"])
    linear = _target_phase_rms(ms, cals["scan"], ["linear", "linear"])
    control = _target_phase_rms(ms, cals["inf"], ["nearest", "linear"])
    print(f"row phase rms: K nearest {nearest:.4f}, K linear {linear:.4f}, control {control:.4f}")
    assert linear < 1.15 * control and nearest < 1.15 * control
    # the attr is what decides: a table saying K was pre-applied linearly frames with the linear K
    s = g.sets[0]
    assert delayframe.solve_interp(s.attrs, "K0") == "nearest"
    assert delayframe.solve_interp(dict(s.attrs, preapply_interp=["linear"]), "K0") == "linear"
    assert delayframe.solve_interp({"preapply_chain": ["K0"]}, "K0") == "nearest"     # older tables


def test_a_key_left_out_of_the_apply_does_not_unframe_the_gain(constant_gains, tmp_path):
    """A gain whose pre-applied chain names keys the apply leaves out (iterations: every other key; a
    Stokes I apply of K and G from a full-polarisation table) is framed when those keys could not have
    taken K's per-scan error: a K / D / KC / CP by its type, a gain read from its table (not per scan:
    framed; per scan: not).  Before, any key left out unframed it (a review: 0.63 against 0.078 rad)."""
    ms, cals = constant_gains
    k = chain.load_term(cals["kbg"], "K0")
    g = chain.load_term(cals["kbg"], "G1")          # G(2 min) solved after K(scan) and B(inf)
    assert list(g.sets[0].attrs["preapply_chain"]) == ["K0", "G0"]
    assert delayframe.k_terms_for(g, [k, g]) == [k]                 # B left out: read, not per scan
    for x in g.sets:                                                # a D / KC in between: by type
        x.attrs = dict(x.attrs, preapply_chain=["K0", "KC0", "D0"], preapply_tables=["", "", ""])
    g.__dict__.pop("_left_out", None)
    assert delayframe.k_terms_for(g, [k, g]) == [k]
    g2 = chain.load_term(cals["kbg"], "G1")                         # an unknown gain in between
    for x in g2.sets:
        x.attrs = dict(x.attrs, preapply_chain=["K0", "G7"], preapply_tables=["", ""])
    assert delayframe.k_terms_for(g2, [k, g2]) == []


def test_keys_of_the_same_name_in_two_tables(constant_gains, tmp_path, caplog):
    """The usual workflow of separate tables: K(scan) in one, a bandpass 'G0' solved with it in a second,
    a gain 'G0' solved with both in a third -- every akcal names its first G 'G0'.  The gain's
    pre-applied 'G0' is the bandpass of the table recorded for it (preapply_tables), not the gain of
    the same name applied beside it: framed by K (it was left unframed, 0.37 against 0.078 rad, a
    review).  With the bandpass's table gone and the bandpass not applied, it cannot be judged: not
    framed, and a warning says why."""
    import logging
    import shutil

    ms, _ = constant_gains
    kt, bt, gt = (str(tmp_path / f"{n}.h5") for n in ("k", "b", "g"))
    akcal(vis=ms, caltable=kt, field="3C147", jones=["K"], solint=["scan"], refant="C00")
    akcal(vis=ms, caltable=bt, field="3C147", jones=["G"], solint=["inf"], freqint=["1MHz"], refant="C00",
          gaintable=[kt], gainjones=["K0"])
    akcal(vis=ms, caltable=gt, field="3C147", jones=["G"], solint=["2min"], refant="C00",
          gaintable=[kt, bt], gainjones=["K0", "G0"])
    k, b, g = chain.load_term(kt, "K0"), chain.load_term(bt, "G0"), chain.load_term(gt, "G0")
    assert list(g.sets[0].attrs["preapply_chain"]) == ["K0", "G0"]
    assert delayframe.k_terms_for(g, [k, b, g]) == [k]
    assert delayframe.k_terms_for(g, [k, g]) == [k]           # the bandpass left out: read from its table
    # copies (an archive, akfluxscale's output): a key of that name is taken whatever its table, the
    # recorded one still present or not (requiring the recorded table unframed every copy, a review)
    arch = tmp_path / "archive"
    arch.mkdir()
    for p in (kt, bt, gt):
        shutil.copy(p, arch)
    ka, ba, ga = (chain.load_term(str(arch / os.path.basename(p)), key)
                  for p, key in ((kt, "K0"), (bt, "G0"), (gt, "G0")))
    assert delayframe.k_terms_for(ga, [ka, ba, ga]) == [ka]
    # two other terms of that name: the one from the recorded table
    g_other = chain.load_term(gt, "G0")
    g_other.key = "G0"
    assert delayframe.k_terms_for(g, [k, g_other, b, g]) == [k]
    shutil.move(bt, str(tmp_path / "elsewhere.h5"))
    g2 = chain.load_term(gt, "G0")
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        assert delayframe.k_terms_for(g2, [k, g2]) == []
    assert "neither applied nor readable from its table" in caplog.text
