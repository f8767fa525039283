"""Simulator hazards (unflagged persistent / intermittent / burst RFI, a noise-only antenna) and the
solve's sample flags on them (alakazam/core/cellflags.py): the truth of the corrupted samples is in
the Truth, and the flags catch them with few false positives."""

import os

import numpy as np
import pytest
from casacore.tables import table

from alakazam.cli import main
from alakazam.core import cellflags, ms_io
from alakazam.sim import simulate_ms
from alakazam.sim.simulate import load_truth

KW = dict(n_ant=6, n_chan=(16, 8), duration_h=1.0, int_s=60, noise=0.05, seed=5, dead_ant=False,
          flag_rows=0.0, leakage=False)


@pytest.fixture(scope="module")
def hazards(tmp_path_factory):
    d = tmp_path_factory.mktemp("hazards")
    clean, bad = str(d / "clean.ms"), str(d / "bad.ms")
    simulate_ms(clean, **KW)
    truth = simulate_ms(bad, rfi_persistent={0: [5]}, rfi_intermittent=True, rfi_bursts=3,
                        dead_antenna_scan=(2, 4), **KW)
    return clean, bad, truth


def _cols(ms, ddid):
    with table(ms, ack=False) as t:
        q = t.query(f"DATA_DESC_ID=={ddid}")        # per DDID: the SPWs have different channel counts
        return {c: q.getcol(c) for c in ("DATA", "FLAG", "TIME", "ANTENNA1", "ANTENNA2", "SCAN_NUMBER",
                                          "FIELD_ID")}


def test_hazards_only_where_the_truth_says(hazards):
    clean, bad, truth = hazards
    t2 = load_truth(bad)
    assert t2.rfi_persistent[0].tolist() == [5] and t2.noise_ant == truth.noise_ant == truth.ant_names[2]
    np.testing.assert_array_equal(t2.rfi_bursts, truth.rfi_bursts)
    np.testing.assert_array_equal(t2.rfi_intermittent, truth.rfi_intermittent)
    assert len(truth.rfi_bursts) == 3 and len(truth.rfi_intermittent) > 0
    with table(bad + "::ANTENNA", ack=False) as t:
        dead_id = list(t.getcol("NAME")).index(truth.noise_ant)
    for ddid, spw in ((0, 1), (1, 0)):                                # DDID d -> SPW n_spw-1-d
        c, b = _cols(clean, ddid), _cols(bad, ddid)
        assert not b["FLAG"].any()                                     # all unflagged
        ti = np.searchsorted(truth.times, b["TIME"])
        expect = np.zeros(b["DATA"].shape[:2], bool)                  # (row, chan) corrupted
        expect[np.isin(ti, truth.rfi_bursts)] = True
        if spw == 0:
            expect[:, 5] = True
        for t_, s_, ch_ in truth.rfi_intermittent:
            if s_ == spw:
                expect[ti == t_, ch_] = True
        deadrow = ((b["ANTENNA1"] == dead_id) | (b["ANTENNA2"] == dead_id)) & (b["SCAN_NUMBER"] == 4)
        diff = np.abs(b["DATA"] - c["DATA"]).max(axis=2) > 0
        # the same data as the clean MS except at the corrupted samples
        np.testing.assert_array_equal(diff, expect | deadrow[:, None])
        # the dead antenna's data are noise only
        assert np.abs(b["DATA"][deadrow][~expect[deadrow]]).std() < 3 * truth.noise
        if spw == 0:
            # the persistent channel: 2-6 x the field's Stokes I added, in every row
            fields = np.array(truth.field_names)[b["FIELD_ID"]]
            stokes_i = np.array([truth.flux_true[f][0] for f in fields])
            rows = ~np.isin(ti, truth.rfi_bursts) & ~deadrow
            rows &= ~np.isin(ti, truth.rfi_intermittent[truth.rfi_intermittent[:, 1] == 0][:, 0])
            added = np.abs(b["DATA"][rows, 5] - c["DATA"][rows, 5]) / stokes_i[rows, None]
            assert added.min() > 1.99 and added.max() < 6.01


def test_solve_flags_catch_every_hazard(hazards):
    _, bad, truth = hazards
    meta = ms_io.read_meta(bad)
    caught, clean_flagged, n_clean = [], 0, 0
    for ddid in meta.spws:
        spw = meta.spws[ddid]
        for fid in range(3):
            ch = ms_io.read_rows(bad, ddid, [fid], chans=np.arange(len(spw.freqs)))
            f = cellflags.flag_chunk(ch, spw.corr_types, 5.0).any(axis=2)
            ti = np.searchsorted(truth.times, ch.time)
            hit = np.zeros(f.shape, bool)
            hit[np.isin(ti, truth.rfi_bursts)] = True
            if spw.spw_id == 0:
                hit[:, 5] = True
            for t_, s_, c_ in truth.rfi_intermittent:
                if s_ == spw.spw_id:
                    hit[ti == t_, c_] = True
            names = [meta.ant_names[a] for a in meta.active_ants]
            dead = names.index(truth.noise_ant)
            deadrow = ((ch.ant1 == dead) | (ch.ant2 == dead)) & (ch.scan == truth.noise_scan)
            caught.append(f[hit].mean() if hit.any() else 1.0)
            ok = ~hit & ~deadrow[:, None]
            clean_flagged += int(f[ok].sum())
            n_clean += int(ok.sum())
    assert min(caught) == 1.0, caught                      # every RFI sample flagged
    assert clean_flagged / n_clean < 0.02, clean_flagged / n_clean


def test_simulate_cli_hazard_options(tmp_path, capsys):
    ms = str(tmp_path / "h.ms")
    assert main(["simulate", ms, "--n-ant", "4", "--n-chan", "8", "--hours", "0.5", "--rfi-persistent",
                 "0:3,0:4", "--rfi-bursts", "1", "--dead-antenna", "1:2", "--rfi-intermittent"]) == 0
    t = load_truth(ms)
    assert t.rfi_persistent[0].tolist() == [3, 4] and len(t.rfi_bursts) == 1 and t.noise_scan == 2
    capsys.readouterr()
    assert main(["simulate", ms, "--dead-antenna", "x"]) == 2
    assert "--dead-antenna" in capsys.readouterr().err
    # by name: the same antenna as its active index (C01 is one of the two extra, inactive antennas)
    ms2 = str(tmp_path / "h2.ms")
    assert main(["simulate", ms2, "--n-ant", "4", "--n-chan", "8", "--hours", "0.5", "--dead-antenna",
                 f"{t.noise_ant}:2"]) == 0
    t2 = load_truth(ms2)
    assert t2.noise_ant == t.noise_ant == t.ant_names[1] and t2.noise_scan == 2
    capsys.readouterr()
    h3 = str(tmp_path / "h3.ms")
    assert main(["simulate", h3, "--n-ant", "4", "--dead-antenna", "C09:2"]) == 2
    err = capsys.readouterr().err
    assert "--dead-antenna: antenna 'C09' is not an active antenna (" + ", ".join(t.ant_names) + ")" in err
    assert "Traceback" not in err and "internal error" not in err and not os.path.exists(h3)
    # a scan the MS does not have: an error, not an MS without the dead antenna
    for scan in ("999", "0", "-1"):
        assert main(["simulate", h3, "--n-ant", "4", "--hours", "0.5", "--dead-antenna", f"C00:{scan}"]) == 2
        err = capsys.readouterr().err
        assert f"--dead-antenna: scan {scan} is not a scan of the simulated MS (1.." in err
        assert "Traceback" not in err and not os.path.exists(h3)


def test_flags_already_in_the_ms_never_extend():
    """Extension counts only what the RFI stages flag, over the samples available before them: in a
    5-antenna array with two antennas flagged in the MS (7 of 10 baselines), no channel or row of the
    others is flagged; RFI the stages find in > 50% of the available samples still extends."""
    from alakazam.core import cellflags

    rng = np.random.default_rng(3)
    a1, a2 = np.triu_indices(5, 1)
    n_int, n_chan = 8, 32
    ant1, ant2 = np.tile(a1, n_int), np.tile(a2, n_int)
    n = len(ant1)
    data = (1 + 0.01 * (rng.normal(size=(n, n_chan, 4)) + 1j * rng.normal(size=(n, n_chan, 4)))).astype(
        np.complex64)
    prior = np.zeros(data.shape, bool)
    dead = np.isin(ant1, [0, 2]) | np.isin(ant2, [0, 2])
    prior[dead] = True
    groups = np.zeros(n, np.int64)
    use = np.array([0, 3])
    cross = ant1 != ant2
    out = cellflags.extend(prior.copy(), groups, cross, use, prior)
    np.testing.assert_array_equal(out, prior)          # nothing beyond the MS's own flags
    # the old rule (every flag counts) would have flagged every channel: 7/10 > 50%
    assert cellflags.extend(prior.copy(), groups, cross, use).all()
    # RFI found in channel 5 on baselines 1-3 and 1-4 in every integration: 2 of the 3 available
    # baselines (> 50%): the channel is flagged whole
    f = prior.copy()
    f[(ant1 == 1) & np.isin(ant2, [3, 4]), 5, :] = True
    out = cellflags.extend(f.copy(), groups, cross, use, prior)
    assert out[:, 5].all() and not out[~dead][:, np.r_[0:5, 6:n_chan]].any()
