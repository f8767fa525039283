"""alakazam end to end on a Measurement Set that CASA itself wrote (review 57c), against the truth and
against CASA 6's own recipe on the same MS.

CASA's simulator (``sm``) writes a VLA MS: 13 D-configuration antennas (casadata's simmos vla.d.cfg),
'perfect R L' feeds, two SPWs of 32 x 4 MHz at 2.0 and 2.5 GHz, two unpolarised point sources (CALA 1 Jy,
CALB 2.5 Jy, spectral indices -0.5 / -0.7; MODEL_DATA by ``ft`` from component lists), four cycles of
4 + 3 minute scans of 10 s integrations -- with CASA's own layout: one scan per SPW at the same times
(scans 1 and 2, 5 and 6, ...), a FEED table with SPECTRAL_WINDOW_ID -1, FLAG_CATEGORY without cells, no
WEIGHT_SPECTRUM, SIGMA = WEIGHT = 1 (``sm.setnoise`` leaves them).  DATA is MODEL_DATA corrupted by known
antenna-based K (+-6 ns per antenna and hand), B (an even amplitude and phase ripple per channel) and a
drifting G per integration: CASA tables holding the inverse terms applied by CASA's applycal (so the
truth is in CASA's table convention), then noise from ``sm.setnoise('simplenoise', 0.1 Jy)`` +
``sm.corrupt`` (0.1 Jy per real component of the parallel hands; sm leaves RL, LR at exactly 0).
flagdata flags E05 in one CALA scan, N03's LL in another (one hand), channels 10~12 and 19~21 of SPW 0
(symmetric about the band centre, so the even bandpass does not bias the delays) and W01, the refant,
for a minute.

Both tools run the same recipe -- K per scan, a phase-only G per integration, a bandpass over the CALA
scans, then G per integration on both fields with K and the bandpass -- CASA with corrdepflags=True
and interp 'nearest' (alakazam's per-hand flags and its default pre-apply interp; CASA's defaults flag
both hands of an antenna with one hand flagged and, by linear interpolation of the K, its gains from
the scan before to the scan after -- documented differences, "Solution flags per polarisation" and
"interp"); then alakazam's akapply (applymode calflag), CASA's applycal of its tables, and CASA's
applycal of alakazam's akexport'ed tables.

Tolerances come from the noise: ``sigma`` = 0.1 Jy per real component (measured here against the truth)
and the noise-free corrupted visibilities V give each term's Cramer-Rao-like error, one real component
of a fractional complex error being sigma / sqrt(sum |V|^2) over the samples that constrain it (a G: the
baselines and channels of its integration; a bandpass channel: the baselines and CALA integrations;
a delay: sum (2 pi (nu - nu_mean))^2 |V|^2); the product K B G, with the reference antenna's phase taken
out, then has E|dX/X|^2 = 2 var_G + 2 var_B + var_G,ref + var_B,ref.

Measured (seed 11): the product K B G per integration, channel, antenna and hand against the truth, rms
|dX/X| 0.0106 (CALA) and 0.0063 (CALB) for alakazam where the noise predicts 0.0106 and 0.0064; CASA
0.0113 and 0.0075.  Delays: alakazam 0.0068 ns rms from the truth (the noise: 0.0069), CASA 0.020 (its
delay estimator is about 3x the noise; with the refant's, CASA's scatter from scan to scan is 0.020 ns
where alakazam's is 0.0065).  CALA's spectrum is flat and the bandpass even: a spectral index or an odd
bandpass amplitude weights the channels unevenly and moves both tools' delays by ~0.01 ns, a bias of
the data, not of the noise.  The bandpasses 9.5e-5 (amplitude) and 0.002 deg (phase, beyond each
antenna's delay difference) apart, the gains 3.6e-4 and 0.02 deg apart, against noise errors of 0.0029
and 0.0041 (one real component, fractional); every term's solution flags equal to CASA's; CORRECTED -
MODEL 0.1406 / 0.1414 Jy rms (CALA / CALB) for alakazam, 0.1407 / 0.1422 for CASA; CASA's applycal of
the exported tables equal to akapply (calflag) to 5.4e-7 of max |V|, with the same flags.  About 30 s.
"""

import json
import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import run_casa  # noqa: E402  (tests/casa_python.py)

pytestmark = pytest.mark.casa

SEED, NOISE_JY, REF = 11, 0.1, 0

BUILD = """
import os, shutil, json
import numpy as np
import casadata
from casatools import simulator, measures, componentlist, table
from casatasks import ft, gaincal, bandpass, applycal, flagdata

SEED, NOISE = {seed}, {noise}
ms = 'vla.ms'
cfg = os.path.join(os.path.dirname(casadata.__file__), '__data__', 'alma', 'simmos', 'vla.d.cfg')
rows = [ln.split() for ln in open(cfg) if ln.strip() and not ln.startswith('#')]
pick = ['W01', 'W02', 'W04', 'W06', 'W08', 'E01', 'E03', 'E05', 'E07', 'N01', 'N03', 'N05', 'N07']
rows = [r for r in rows if r[4] in pick]
xyz = np.array([[float(v) for v in r[:3]] for r in rows])
names = [r[4] for r in rows]
nant = len(names)
sm = simulator(); me = measures(); cl = componentlist(); tb = table()
sm.open(ms)
sm.setconfig(telescopename='VLA', x=xyz[:, 0].tolist(), y=xyz[:, 1].tolist(), z=xyz[:, 2].tolist(),
             dishdiameter=[25.0] * nant, mount=['alt-az'] * nant, antname=names, padname=names,
             coordsystem='global', referencelocation=me.observatory('VLA'))
for i, f0 in enumerate(['2.0GHz', '2.5GHz']):
    sm.setspwindow(spwname=f'S{{i}}', freq=f0, deltafreq='4MHz', freqresolution='4MHz', nchannels=32,
                   stokes='RR RL LR LL')
sm.setfeed(mode='perfect R L', pol=[''])
DIRA = 'J2000 13h31m08.288 +30d30m32.96'
DIRB = 'J2000 13h53m30.00 +28d00m00.0'
sm.setfield(sourcename='CALA', sourcedirection=me.direction(*DIRA.split()))
sm.setfield(sourcename='CALB', sourcedirection=me.direction(*DIRB.split()))
sm.setlimits(shadowlimit=0.001, elevationlimit='8.0deg')
sm.setauto(autocorrwt=0.0)
sm.settimes(integrationtime='10s', usehourangle=True, referencetime=me.epoch('utc', '2024/03/20/00:00:00'))
t = -0.3
for cyc in range(4):
    for src, dur in (('CALA', 4 / 60), ('CALB', 3 / 60)):
        for spw in ('S0', 'S1'):
            sm.observe(sourcename=src, spwname=spw, starttime=f'{{t}}h', stoptime=f'{{t + dur}}h')
        t += dur + 1 / 60
sm.done()
for name, d, flux, idx in (('cl_a.cl', DIRA, 1.0, 0.0), ('cl_b.cl', DIRB, 2.5, -0.7)):
    cl.done()
    cl.addcomponent(flux=flux, fluxunit='Jy', polarization='Stokes', dir=d, shape='point', freq='2.25GHz',
                    spectrumtype='spectral index', index=idx)
    cl.rename(name); cl.close()
ft(vis=ms, field='CALA', complist='cl_a.cl', usescratch=True)
ft(vis=ms, field='CALB', complist='cl_b.cl', usescratch=True)
# template tables (K, B, G per integration), solved on MODEL_DATA + a little noise (a noise-free solve
# writes no solutions), then overwritten with the truth and its inverse
tb.open(ms, nomodify=False)
mod = tb.getcol('MODEL_DATA')
r0 = np.random.default_rng(0)
tb.putcol('DATA', mod + 1e-3 * (r0.normal(size=mod.shape) + 1j * r0.normal(size=mod.shape)))
t0 = tb.getcol('TIME').min()
tb.close()
gaincal(vis=ms, caltable='k0', gaintype='K', solint='inf', combine='scan', refant='W01')
bandpass(vis=ms, caltable='b0', solint='inf', combine='scan,field', refant='W01')
gaincal(vis=ms, caltable='g0', gaintype='G', calmode='ap', solint='int', refant='W01')
tb.open(ms, nomodify=False)
tb.putcol('DATA', tb.getcol('MODEL_DATA'))
tb.close()
rng = np.random.default_rng(SEED)
tau = rng.uniform(-6, 6, (nant, 2))
x = np.linspace(-1, 1, 32)
bamp = (1 + rng.normal(0, 0.06, (2, nant, 2, 1)) * (x ** 2 - 1 / 3)
        + rng.normal(0, 0.03, (2, nant, 2, 1)) * np.cos(4 * x))
bph = (rng.normal(0, 0.25, (2, nant, 2, 1)) * (x ** 2 - 1 / 3)
       + rng.normal(0, 0.1, (2, nant, 2, 1)) * np.cos(4 * x))
bp = bamp * np.exp(1j * bph)                                   # [spw, ant, pol, chan], even in the channel
gA = rng.uniform(0.8, 1.25, (nant, 2)); gP = rng.uniform(-np.pi, np.pi, (nant, 2))
rate = rng.normal(0, 0.5, (nant, 2)); ph2 = rng.uniform(0, 2 * np.pi, (nant, 2))

def gain(tt):
    h = np.asarray(tt)[:, None, None] / 3600.0
    return (gA * (1 + 0.03 * np.sin(2 * np.pi * h / 0.6 + ph2))
            * np.exp(1j * (gP + rate * np.sin(2 * np.pi * h / 0.9 + ph2))))

def write(src, dst, sign):
    shutil.copytree(src, dst)
    tb.open(dst, nomodify=False)
    a1 = tb.getcol('ANTENNA1')
    if src == 'k0':
        fp = tb.getcol('FPARAM')
        for r in range(len(a1)):
            fp[:, 0, r] = sign * tau[a1[r]]
        tb.putcol('FPARAM', fp)
    elif src == 'b0':
        sp = tb.getcol('SPECTRAL_WINDOW_ID'); cp = tb.getcol('CPARAM')
        for r in range(len(a1)):
            cp[:, :, r] = bp[sp[r], a1[r]] ** sign
        tb.putcol('CPARAM', cp)
    else:
        cp = tb.getcol('CPARAM')
        cp[:, 0, :] = (gain(tb.getcol('TIME') - t0)[np.arange(len(a1)), a1] ** sign).T
        tb.putcol('CPARAM', cp)
    tb.close()

for src, t_true, t_inv in (('k0', 'kt', 'ki'), ('b0', 'bt', 'bi'), ('g0', 'gt', 'gi')):
    write(src, t_true, 1)
    write(src, t_inv, -1)
applycal(vis=ms, gaintable=['ki', 'bi', 'gi'], interp=['nearest'] * 3, calwt=False, flagbackup=False)
tb.open(ms, nomodify=False)
tb.putcol('DATA', tb.getcol('CORRECTED_DATA'))
tb.close()
sm.openfromms(ms)
sm.setseed(SEED)
sm.setnoise(mode='simplenoise', simplenoise=f'{{NOISE}}Jy')
sm.corrupt()
sm.done()
flagdata(vis=ms, mode='manual', antenna='E05', scan='9,10', flagbackup=False)
flagdata(vis=ms, mode='manual', antenna='N03', scan='5,6', correlation='LL', flagbackup=False)
flagdata(vis=ms, mode='manual', spw='0:10~12;19~21', flagbackup=False)
flagdata(vis=ms, mode='manual', antenna='W01', timerange='09:01:00~09:02:00', flagbackup=False)
np.savez('truth.npz', tau=tau)
# CASA's recipe (corrdepflags and nearest: alakazam's flag semantics, see the module docstring)
kw = dict(refant='W01', corrdepflags=True)
gaincal(vis=ms, caltable='c.K', field='CALA', gaintype='K', solint='inf', **kw)
gaincal(vis=ms, caltable='c.Gp', field='CALA', gaintype='G', calmode='p', solint='int', gaintable=['c.K'],
        interp=['nearest'], **kw)
bandpass(vis=ms, caltable='c.B', field='CALA', solint='inf', combine='scan', gaintable=['c.K', 'c.Gp'],
         interp=['nearest', 'nearest'], **kw)
gaincal(vis=ms, caltable='c.G', field='CALA,CALB', gaintype='G', calmode='ap', solint='int',
        gaintable=['c.K', 'c.B'], interp=['nearest', 'nearest'], **kw)
shutil.copytree(ms, 'casa.ms')
shutil.copytree(ms, 'exp.ms')
for f in ('CALA', 'CALB'):
    applycal(vis='casa.ms', field=f, gaintable=['c.K', 'c.B', 'c.G'], gainfield=['', '', f],
             interp=['nearest'] * 3, calwt=False, flagbackup=False)
"""

APPLY_EXPORTED = """
from casatasks import applycal
for f in ('CALA', 'CALB'):
    applycal(vis='exp.ms', field=f, gaintable=['e.K', 'e.B', 'e.G'], gainfield=['', '', f],
             interp=['nearest'] * 3, calwt=False, flagbackup=False)
"""


def _rows(path, col):
    """{(time rounded to 0.1 s, spw, antenna): (parameters (chan, pol), flags)} of a CASA caltable."""
    from casacore.tables import table

    t = table(path, ack=False)
    return {(round(float(tm), 1), int(s), int(a)): (p, f) for tm, s, a, p, f in
            zip(t.getcol("TIME"), t.getcol("SPECTRAL_WINDOW_ID"), t.getcol("ANTENNA1"), t.getcol(col),
                t.getcol("FLAG"))}


def _ratio(ours, casa, n_ant):
    """{(time, spw): (ant, chan, pol)} ours / CASA's (NaN where either is flagged), with the common phase of
    each time, channel and hand taken out: the phase reference is a gauge (where the refant is flagged CASA
    refers that time to another antenna, alakazam bridges it back to the refant)."""
    out = {}
    for t, s in {k[:2] for k in ours}:
        o, c = ([tab[t, s, a] for a in range(n_ant)] for tab in (ours, casa))
        r = np.array([np.where(fo | fc, np.nan, po / pc) for (po, fo), (pc, fc) in zip(o, c)])
        with np.errstate(invalid="ignore"):
            common = np.nansum(r / np.abs(r), axis=0)
            out[t, s] = r * np.conj(common) / np.abs(common)
    return out


def test_casa_built_ms_against_truth_and_casa(tmp_path, monkeypatch):
    from casacore.tables import table

    from alakazam.calibration import chain
    from alakazam.caltasks import akapply, akcal, akexport
    from alakazam.io import hdf5

    failed = []

    def check(ok, *why):
        if not ok:
            failed.append(why)

    monkeypatch.chdir(tmp_path)
    run_casa(BUILD.format(seed=SEED, noise=NOISE_JY), tmp_path, timeout=900)
    flag_in = table("vla.ms", ack=False).getcol("FLAG")[..., [0, 3]]     # the MS's flags before any apply
    akcal(vis="vla.ms", caltable="ak.h5", field="CALA", refant="W01", jones=["K", "G", "G"],
          calmode=["ap", "p", "ap"], solint=["scan", "int", "inf"], freqint=["full", "full", "4MHz"])
    akcal(vis="vla.ms", caltable="akg.h5", field="CALA,CALB", refant="W01", jones=["G"], solint="int",
          gaintable=["ak.h5", "ak.h5"], gainjones=["K0", "G1"])
    akapply(vis="vla.ms", gaintable=["ak.h5", "ak.h5", "akg.h5"], jones=["K0", "G1", "G0"],
            interp=["nearest"] * 3, applymode="calflag")
    for tab, key, out in (("ak.h5", "K0", "e.K"), ("ak.h5", "G1", "e.B"), ("akg.h5", "G0", "e.G")):
        akexport(caltable=tab, jones=key, casatable=out)
    run_casa(APPLY_EXPORTED, tmp_path)

    # akinfo lists the simultaneous scans of the two SPWs as listobs: 1, 2, 5, 6, ...
    assert [r["scan"] for r in hdf5.summary("ak.h5") if r["key"] == "K0"] == [1, 2, 5, 6, 9, 10, 13, 14]

    ms = table("vla.ms", ack=False)
    names = list(table("vla.ms/ANTENNA", ack=False).getcol("NAME"))
    fields = list(table("vla.ms/FIELD", ack=False).getcol("NAME"))
    spw_of_dd = table("vla.ms/DATA_DESCRIPTION", ack=False).getcol("SPECTRAL_WINDOW_ID")
    freqs = [table("vla.ms/SPECTRAL_WINDOW", ack=False).getcell("CHAN_FREQ", s) for s in (0, 1)]
    TIME, FID, A1, A2 = (ms.getcol(c) for c in ("TIME", "FIELD_ID", "ANTENNA1", "ANTENNA2"))
    SPW = spw_of_dd[ms.getcol("DATA_DESC_ID")]
    data, model = ms.getcol("DATA")[..., [0, 3]], ms.getcol("MODEL_DATA")[..., [0, 3]]

    # the noise-free corrupted data from the truth tables (CASA's convention, read as akapply reads them)
    truth = [chain.load_term("kt", "K"), chain.load_term("bt", "G0"), chain.load_term("gt", "G")]
    chains = {"alakazam": [chain.load_term("ak.h5", "K0"), chain.load_term("ak.h5", "G1"),
                           chain.load_term("akg.h5", "G0")],
              "CASA": [chain.load_term("c.K", "K"), chain.load_term("c.B", "G0"),
                       chain.load_term("c.G", "G")]}
    resid, var_g, var_b, err = [], {}, {}, {k: {f: [] for f in fields} for k in chains}
    pred = {f: [] for f in fields}
    s2_b = {}
    xt_all = {}
    for s in (0, 1):
        for f, fname in enumerate(fields):
            sel = (FID == f) & (SPW == s)
            ut = np.unique(TIME[sel])
            xt, _ = chain.compose(truth, s, ut, freqs[s], names, target_name=fname)   # (t, ant, chan, pol)
            xt_all[s, fname] = (ut, xt)
            ti = np.searchsorted(ut, TIME[sel])
            v = xt[ti, A1[sel]] * np.conj(xt[ti, A2[sel]]) * model[sel]            # (row, chan, pol)
            ok = ~flag_in[sel]
            resid.append((data[sel] - v)[ok])
            v2 = np.where(ok, np.abs(v) ** 2, 0.0)
            # sum |V|^2 per (time, antenna, hand) over baselines and channels: a G's information
            s2 = np.zeros((len(ut), len(names), 2))
            for ant in (A1[sel], A2[sel]):
                np.add.at(s2, (ti, ant), v2.sum(1))
            with np.errstate(divide="ignore"):          # a flagged antenna: no information, var inf
                var_g[s, fname] = NOISE_JY ** 2 / s2
            if fname == "CALA":     # a bandpass channel's: over baselines and the CALA integrations
                sb = np.zeros((len(names), 32, 2))
                for ant in (A1[sel], A2[sel]):
                    np.add.at(sb, ant, v2)
                s2_b[s] = sb
    sigma = np.std(np.concatenate([np.concatenate(resid).real, np.concatenate(resid).imag]))
    assert abs(sigma / NOISE_JY - 1) < 0.01, sigma                 # sm's simplenoise, per real component
    for s in (0, 1):
        with np.errstate(divide="ignore"):
            var_b[s] = NOISE_JY ** 2 / s2_b[s]                            # (ant, chan, pol)

    # (a) the product K B G against the truth, refant phase out, with the noise's prediction
    def gauge(x):
        r = x[:, REF:REF + 1]
        with np.errstate(invalid="ignore"):                      # NaN: flagged solutions
            return x * np.conj(r) / np.abs(r)

    for s in (0, 1):
        for fname in fields:
            ut, xt = xt_all[s, fname]
            vg, vb = var_g[s, fname][:, :, None, :], var_b[s][None]
            p = 2 * vg + 2 * vb + vg[:, REF:REF + 1] + vb[:, REF:REF + 1]
            p[:, REF] = vg[:, REF] + vb[:, REF]
            for k, terms in chains.items():
                x, _ = chain.compose(terms, s, ut, freqs[s], names, target_name=fname)
                e = gauge(x) / gauge(xt) - 1
                good = np.isfinite(e)
                err[k][fname].append(np.abs(e[good]) ** 2)
                if k == "alakazam":
                    pred[fname].append(np.broadcast_to(p, e.shape)[good])
    rms = {k: {f: float(np.sqrt(np.mean(np.concatenate(v[f])))) for f in fields} for k, v in err.items()}
    noise_rms = {f: float(np.sqrt(np.mean(np.concatenate(pred[f])))) for f in fields}
    print("product K B G vs truth, rms |dX/X|:", json.dumps(rms), "noise predicts", json.dumps(noise_rms))
    for f in fields:
        check(rms["alakazam"][f] < 1.15 * noise_rms[f], (f, rms, noise_rms))
        check(rms["alakazam"][f] < 1.05 * rms["CASA"][f], (f, rms))

    # solution flags: every term's as CASA's (corrdepflags=True, nearest)
    ek, ck = _rows("e.K", "FPARAM"), _rows("c.K", "FPARAM")
    eb, cb = _rows("e.B", "CPARAM"), _rows("c.B", "CPARAM")
    eg, cg = _rows("e.G", "CPARAM"), _rows("c.G", "CPARAM")
    eb = {k[1:]: v for k, v in eb.items()}
    cb = {k[1:]: v for k, v in cb.items()}
    for e, c in ((ek, ck), (eb, cb), (eg, cg)):
        assert set(e) == set(c)
        assert all((e[k][1] == c[k][1]).all() for k in e), [k for k in e if (e[k][1] != c[k][1]).any()]
    assert 0 < np.mean([v[1].mean() for v in eg.values()]) < 0.1          # the flags did flag some

    # (b) delays (ns, relative to the refant): alakazam's at the noise, CASA's, and the two apart
    tau = np.load("truth.npz")["tau"]
    tt = tau - tau[REF]

    def delays(rows):
        return {k: np.where(f[0], np.nan, p[0] - rows[k[0], k[1], REF][0][0]) for k, (p, f) in rows.items()}
    dk_a, dk_c = delays(ek), delays(ck)
    e_a = np.array([dk_a[k] - tt[k[2]] for k in dk_a if k[2] != REF])
    e_c = np.array([dk_c[k] - tt[k[2]] for k in dk_c if k[2] != REF])
    d_ac = np.array([dk_a[k] - dk_c[k] for k in dk_a if k[2] != REF])
    # thermal: 1 / sigma_tau^2 = sum (2 pi (nu - nu_mean))^2 |V|^2 / sigma^2 per antenna, CALA scan and hand
    var_tau = []
    for s in (0, 1):
        sel = (FID == 0) & (SPW == s)
        ut, xt = xt_all[s, "CALA"]
        ti = np.searchsorted(ut, TIME[sel])
        v = xt[ti, A1[sel]] * np.conj(xt[ti, A2[sel]]) * model[sel]
        v2 = np.where(flag_in[sel], 0.0, np.abs(v) ** 2)
        w = (2 * np.pi * (freqs[s] - freqs[s].mean()) * 1e-9) ** 2     # rad^2 per ns^2
        n_scans = 4
        info = np.zeros((len(names), 2))
        for ant in (A1[sel], A2[sel]):
            np.add.at(info, ant, (v2 * w[None, :, None]).sum(1))
        var_tau.append(NOISE_JY ** 2 / (info / n_scans))
    var_tau = np.array(var_tau)                                       # (spw, ant, pol)
    vt = (var_tau[:, 1:] + var_tau[:, :1]).ravel()
    sig_tau = float(np.sqrt(np.mean(vt[np.isfinite(vt)])))
    r_a, r_c, r_ac = (float(np.sqrt(np.nanmean(x ** 2))) for x in (e_a, e_c, d_ac))
    print(f"delays: alakazam - truth {r_a:.4f} ns, CASA - truth {r_c:.4f}, alakazam - CASA {r_ac:.4f}; "
          f"noise {sig_tau:.4f}")
    check(r_a < 1.3 * sig_tau, (r_a, sig_tau))
    check(r_ac < r_c + 1.3 * sig_tau, (r_ac, r_c, sig_tau))

    # bandpass: the two solve the same data -- apart by far less than its noise, beyond each antenna's
    # delay difference (a linear phase in frequency, which the bandpass takes from the K's difference)
    rb = _ratio({(0,) + k: v for k, v in eb.items()}, {(0,) + k: v for k, v in cb.items()}, len(names))
    vb = np.concatenate([var_b[s][1:].ravel() for s in (0, 1)])
    sig_b = float(np.sqrt(np.mean(vb[np.isfinite(vb)])))
    amp, ph = [], []
    for s in (0, 1):
        nu = freqs[s] - freqs[s].mean()
        for a in range(len(names)):
            r = rb[0, s][a]                                            # (chan, pol)
            for p in (0, 1):
                ok = np.isfinite(r[:, p])
                phase = np.unwrap(np.angle(r[ok, p]))
                fit = np.polyval(np.polyfit(nu[ok], phase, 1), nu[ok])
                ph.append(phase - fit)
                amp.append(np.abs(r[ok, p]) - 1)
    amp, ph = np.concatenate(amp), np.concatenate(ph)
    print(f"bandpass alakazam / CASA: amplitude rms {np.sqrt(np.mean(amp ** 2)):.2e}, phase beyond a delay "
          f"{np.degrees(np.sqrt(np.mean(ph ** 2))):.4f} deg; noise {sig_b:.4f}")
    check(np.sqrt(np.mean(amp ** 2)) < 0.1 * sig_b, 'bandpass amplitude')
    check(np.sqrt(np.mean(ph ** 2)) < 0.1 * sig_b, 'bandpass phase')

    # gains per integration (exported: CASA's delay frame), against a noise error of sig_g
    r = np.array([v[:, 0] for v in _ratio(eg, cg, len(names)).values()])
    r = r[np.isfinite(r)]
    vg = np.concatenate([var_g[k][:, 1:].ravel() for k in var_g])
    sig_g = float(np.sqrt(np.mean(vg[np.isfinite(vg)])))
    print(f"gains alakazam / CASA: amplitude rms {np.std(np.abs(r)):.2e}, phase rms "
          f"{np.degrees(np.sqrt(np.mean(np.angle(r) ** 2))):.4f} deg; noise {sig_g:.4f}")
    check(np.sqrt(np.mean((np.abs(r) - 1) ** 2)) < 0.15 * sig_g, 'gain amplitude')
    check(np.sqrt(np.mean(np.angle(r) ** 2)) < 0.15 * sig_g, 'gain phase')

    # (c) corrected data: akapply vs CASA's applycal of its own tables (same flags; both at the noise) and
    # of alakazam's exported tables (the same numbers)
    ca, fa = ms.getcol("CORRECTED_DATA"), ms.getcol("FLAG")
    cc, fc = table("casa.ms", ack=False).getcol("CORRECTED_DATA"), table("casa.ms", ack=False).getcol("FLAG")
    ce, fe = table("exp.ms", ack=False).getcol("CORRECTED_DATA"), table("exp.ms", ack=False).getcol("FLAG")
    assert (fa == fc).all() and (fa == fe).all()
    good = ~fa
    assert np.abs(ca - ce)[good].max() < 1e-5 * np.abs(ca[good]).max()
    m4 = ms.getcol("MODEL_DATA")
    for f, fname in enumerate(fields):
        sel = (FID == f)[:, None, None] & good
        sel[..., [1, 2]] = False
        r_ak = np.sqrt(np.mean(np.abs(ca - m4)[sel] ** 2))
        r_ca = np.sqrt(np.mean(np.abs(cc - m4)[sel] ** 2))
        print(f"{fname}: rms(CORRECTED - MODEL) alakazam {r_ak:.5f}, CASA {r_ca:.5f}")
        check(r_ak < 1.01 * r_ca, fname, r_ak, r_ca)
    shutil.rmtree(tmp_path / "casa.ms", ignore_errors=True)
    assert not failed, failed
