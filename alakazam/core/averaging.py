"""Weighted accumulation of (row, chan, corr) data into solution sample bins (numba).

A running accumulator: :func:`accumulate_corrected` on successive row chunks of the same rows gives sums
identical (up to floating-point summation order) to one call on all rows, which is what makes the
three memory tiers of the solve flow give the same solutions.  (Its straightforward reference,
``accumulate``, is in tests/reference_kernels.py.)

Sums are kept per (sample bin, frequency sample, baseline, corr); dividing by ``w_sum`` gives the
weighted average, whose inverse variance is ``w_sum``.

Cost (issue 16, measured on the 9000 3C286 rows x 1024 channels of the full-polarisation benchmark,
process CPU of the steps' captured calls replayed on one thread, old and new kernels alternating, best
of 7-15): the passes are compute-bound scalar loops, ~15-30 ns per (row, channel, used correlation)
against ~0.05 s to stream DATA + MODEL once.  With P the model's share is more than half of K0's pass
(an ablation without it: -54% K0, -34% G0, -32% G1); a linear feed's P is real and the model is then
formed from the real products (comment "Real P coefficients" below: the same bits in every sum):
over four A/B runs on a loaded 2-core machine K0 +1..-19% (median ~-10%), G0 -9..-18%, D0 -4..-16%,
KC0 / CP0 +4..-10%, G1 -5..+5% (G1's extra cost over G0 is its per-channel read-modify-write of the
sums, not the model).  The first-use compile of _accumulate_hands grew by ~0.2-0.4 s CPU, of
_accumulate_corrected by ~0.8-1.5 s.  Tried and not kept (same bits, measured): both correlations
of a pair in one channel pass (G1 ~-7% on the real calls, but twice the kernel's code: compile),
1-d views of the row hoisted out of the channel loop (no gain), channel blocks in the per-channel
case (+30%: numba's code for the nested loop), per-sample helpers taking arrays (a reference count
per call: 2-5x slower).
"""

import numba
import numpy as np

from .._numba import njit, threaded
from ..jones.algebra import sandwich


# ---------------------------------------------------------------------------------------------
# Fused pass of the solve flow: pre-apply + flag->weight + baseline orientation + accumulation
# ---------------------------------------------------------------------------------------------
#: 4-correlation index of V_ab for each index of V_ba = V_ab^H (pp, pq, qp, qq -> pp, qp, pq, qq)
_SWAP = np.array([0, 2, 1, 3], np.int64)


@njit(inline="always")
def _p_coefficients(sky, t, a1, a2, coef):
    # P alone (one sky channel): M'_ij = sum_kl S_a[i, k] conj(S_b[j, l]) M_kl, coef[2 i + j, 2 k + l]
    # for the row's antennas a1, a2 at time t (both accumulation kernels)
    for i in range(2):
        for j in range(2):
            for kk in range(2):
                for ll in range(2):
                    coef[2 * i + j, 2 * kk + ll] = sky[t, a1, 0, i, kk] * np.conj(sky[t, a2, 0, j, ll])


# Real P coefficients (both kernels, "creal"): a linear feed's P is real, so the imaginary parts of the
# row's coefficients coef[2 i + j, 2 k + l] are zeros, and M' = ((c0 M0 + c1 M1) + c2 M2) + c3 M3 is
# evaluated from the real products alone: (r0 M0r + r1 M1r ..., r0 M0i + r1 M1i ...) in the same order,
# half the arithmetic (the model's share of K0 / G0 / G1 and of KC / CP / D).  With finite model values
# each complex product c M = (r Mr - (+-0) Mi, r Mi + (+-0) Mr) equals (r Mr, r Mi) up to the sign of a
# zero part, and so does every partial sum; w' M' then adds +-0 where the two differ, to a sum that
# starts at +0 and so is never -0: the same bits in every sum.  A non-finite model value makes a part
# non-finite here too (r * inf, 0 * inf, NaN), and the sample then takes the complex products (with their
# NaN): the same bits there too (tests/test_accumulate_hands.py).  (Inline in the loops: a helper taking
# the model array costs a reference count per call.)


@njit
def _accumulate_corrected(start, stride, vis_sum, model_sum, w_sum, w_row, data, model, flag, weight, order,
                          part_lo, tidx, t_off, ant1, ant2, acc_bin, row_bl, fsamp_of_chan, corr_src,
                          ginv, gbad, sky, skybad, use, all4, bin_major):
    # partitions start, start + stride, ... on this thread (_numba.threaded) of the baselines:
    # order[part_lo[p]:part_lo[p + 1]] are the rows of the
    # baselines of partition p (a baseline is in one partition only) -> each thread owns the output
    # slices [:, b] of its baselines and w_row of its rows: race-free.  Within a partition rows keep
    # their relative order, so every output element sums its samples in row order (then channel order),
    # the order of a serial loop whatever the number of threads.
    # bin_major: the sums are given in their (frequency sample, baseline, bin, corr) memory order (the
    # C-contiguous base of the caller's transposed view) and indexed [fs, b, s, c]: the same elements,
    # and one compiled specialisation (C-contiguous sums) for both layouts (cold start)
    n_part = part_lo.shape[0] - 1
    n_chan = data.shape[1]
    has_diag = ginv.shape[0] > 0
    has_sky = sky.shape[0] > 0
    sky_per_chan = sky.shape[2] > 1         # else one channel serves all (P alone)
    # all4 (a term whose model mixes the correlations, D): a sample's four terms are kept here and
    # added only when all four are usable (the same values, added in the same order)
    tv = np.zeros(4, np.complex128)
    tm = np.zeros(4, np.complex128)
    tw = np.zeros(4)
    # P alone (one sky channel): M'_ij = sum_kl S_a[i, k] conj(S_b[j, l]) M_kl, its 16 coefficients
    # evaluated once per row (coef[2 i + j, 2 k + l]) and each output only where a used correlation
    # needs it (G, K, KC, CP: two of the four) -- the 2x2 sandwich per channel cost as much as the rest
    # of the pass (same values to rounding: a sum in another order)
    coef = np.zeros((4, 4), np.complex128)
    p_row = has_sky and not sky_per_chan
    creal = False
    for p in range(start, n_part, stride):
        for k in range(part_lo[p], part_lo[p + 1]):
            row = order[k]
            s = acc_bin[row]
            b = row_bl[row]
            if s < 0 or b < 0:
                continue
            t = tidx[row] - t_off
            a1 = ant1[row]
            a2 = ant2[row]
            swap = a1 > a2
            wr = 0.0
            row_sky_ok = True
            if p_row:
                row_sky_ok = not (skybad[t, a1, 0] or skybad[t, a2, 0])
                if row_sky_ok:
                    _p_coefficients(sky, t, a1, a2, coef)
                    # real coefficients (a linear feed's P): M' from their real parts (the same sums)
                    creal = True
                    for x in range(4):
                        for y in range(4):
                            if coef[x, y].imag != 0:
                                creal = False
            for chan in range(n_chan):
                fs = fsamp_of_chan[chan]
                if fs < 0:
                    continue
                i0 = fs if bin_major else s         # the sums' element [s, b, fs, c]: [i0, b, i2, c]
                i2 = s if bin_major else fs
                sky_ok = True
                m0 = m1 = m2 = m3 = 0j
                if p_row:
                    sky_ok = row_sky_ok
                    if sky_ok:
                        m0 = np.complex128(model[row, chan, corr_src[0]]) if corr_src[0] >= 0 else 0j
                        m1 = np.complex128(model[row, chan, corr_src[1]]) if corr_src[1] >= 0 else 0j
                        m2 = np.complex128(model[row, chan, corr_src[2]]) if corr_src[2] >= 0 else 0j
                        m3 = np.complex128(model[row, chan, corr_src[3]]) if corr_src[3] >= 0 else 0j
                elif has_sky:
                    sc = chan if sky_per_chan else 0
                    # M' = S_a M S_b^H (model in the data's orientation a, b), zero where non-finite
                    sky_ok = not (skybad[t, a1, sc] or skybad[t, a2, sc])
                    if sky_ok:
                        n0 = np.complex128(model[row, chan, corr_src[0]]) if corr_src[0] >= 0 else 0j
                        n1 = np.complex128(model[row, chan, corr_src[1]]) if corr_src[1] >= 0 else 0j
                        n2 = np.complex128(model[row, chan, corr_src[2]]) if corr_src[2] >= 0 else 0j
                        n3 = np.complex128(model[row, chan, corr_src[3]]) if corr_src[3] >= 0 else 0j
                        m0, m1, m2, m3 = sandwich(
                            sky[t, a1, sc, 0, 0], sky[t, a1, sc, 0, 1], sky[t, a1, sc, 1, 0],
                            sky[t, a1, sc, 1, 1], n0, n1, n2, n3, sky[t, a2, sc, 0, 0],
                            sky[t, a2, sc, 0, 1], sky[t, a2, sc, 1, 0], sky[t, a2, sc, 1, 1])
                whole = True                             # all4: every correlation usable so far
                for c in range(4):
                    if not use[c]:                       # a correlation the term does not use
                        continue
                    src = _SWAP[c] if swap else c        # 4-corr index in the row's own orientation
                    ks = corr_src[src]                   # index in the stored correlations
                    wt = np.float64(weight[row, chan, ks]) if ks >= 0 else 0.0
                    i = 0 if src < 2 else 1
                    j = 0 if (src == 0 or src == 2) else 1
                    if (ks < 0 or flag[row, chan, ks] or not wt > 0 or (has_sky and not sky_ok)
                            or (has_diag and (gbad[t, a1, chan, i] or gbad[t, a2, chan, j]))):
                        if all4:
                            whole = False
                            break
                        continue
                    v = np.complex128(data[row, chan, ks])
                    if has_diag:
                        # V' = V / (g_a,i conj(g_b,j)), as the product of the inverses; its noise is
                        # sigma / |g_a,i g_b,j|, so its weight is w |g_a,i g_b,j|^2 (CASA's pre-apply)
                        gi = ginv[t, a1, chan, i]
                        gj = ginv[t, a2, chan, j]
                        v = v * (gi * np.conj(gj))
                        wt = wt / ((gi.real * gi.real + gi.imag * gi.imag)
                                   * (gj.real * gj.real + gj.imag * gj.imag))
                    if p_row:                            # (m0..m3: the stored model here)
                        fast = False
                        if creal:
                            mr = (((coef[src, 0].real * m0.real + coef[src, 1].real * m1.real)
                                   + coef[src, 2].real * m2.real) + coef[src, 3].real * m3.real)
                            mi = (((coef[src, 0].real * m0.imag + coef[src, 1].real * m1.imag)
                                   + coef[src, 2].real * m2.imag) + coef[src, 3].real * m3.imag)
                            fast = mr - mr == 0 and mi - mi == 0     # both finite
                        if fast:
                            m = complex(mr, mi)
                        else:
                            m = coef[src, 0] * m0 + coef[src, 1] * m1 + coef[src, 2] * m2 + coef[src, 3] * m3
                    elif has_sky:
                        if src == 0:
                            m = m0
                        elif src == 1:
                            m = m1
                        elif src == 2:
                            m = m2
                        else:
                            m = m3
                    else:
                        m = np.complex128(model[row, chan, ks])
                    if swap:                             # V_ab = V_ba^H
                        v = np.conj(v)
                        m = np.conj(m)
                    if all4:
                        tv[c] = wt * v
                        tm[c] = wt * m
                        tw[c] = wt
                        continue
                    vis_sum[i0, b, i2, c] += wt * v
                    model_sum[i0, b, i2, c] += wt * m
                    w_sum[i0, b, i2, c] += wt
                    wr += wt
                if all4 and whole:
                    for c in range(4):
                        if use[c]:
                            vis_sum[i0, b, i2, c] += tv[c]
                            model_sum[i0, b, i2, c] += tm[c]
                            w_sum[i0, b, i2, c] += tw[c]
                            wr += tw[c]
            w_row[row] = wr


@njit
def _accumulate_hands(start, stride, vis_sum, model_sum, w_sum, w_row, data, model, flag, weight, order,
                      part_lo, tidx, t_off, ant1, ant2, acc_bin, row_bl, fsamp_of_chan, corr_src, ginv, gbad,
                      sky, skybad, ucorr, one_fs, bin_major, rv, rm, rw, cur):
    # _accumulate_corrected for a term that takes each correlation on its own (not all4) with no sky
    # table or P alone (one sky channel): K, G, KC, CP.  The same samples, values and weights; the loop
    # order is (row, used correlation, channel) with the row's P coefficients and the correlation's
    # indices hoisted out of the channel loop.  ``one_fs`` >= 0: every channel used goes to that one
    # frequency sample (a full-band solve) and each (row, correlation) is summed locally, then added
    # (the same sums to rounding); -1: per-channel samples, added sample by sample as the general kernel
    # does (each element sums in the same order: bit for bit).  ``bin_major``: the sums indexed
    # [fs, b, s, c] (as in _accumulate_corrected).
    # Per-channel samples bin-major (CP over one time cell, unit._bin_major; ``rv`` non-empty): the
    # frequency samples of one (bin, baseline) are n_bl * n_bin * 64 B apart (288 kB: CP per channel
    # over 15 scans), a page (and a TLB miss) per channel and per array for every row.  Each baseline's
    # rows of one bin sum instead into a contiguous copy of that slot, ``rv[b], rm[b], rw[b]``
    # ([fs, used correlation]; ``cur[b]``: the bin it holds, -1 none), loaded from the sums when the
    # baseline's rows move to another bin and the slot held before stored back then (the slots still
    # held at the end by flush_runs, after the caller's last call: a slot is loaded and stored once per
    # scan rather than once per call).  Every element adds the same terms in the same
    # order to the same starting value: bit for bit the sums of adding in place
    # (tests/test_accumulate_hands.py)
    n_part = part_lo.shape[0] - 1
    n_chan = data.shape[1]
    has_diag = ginv.shape[0] > 0
    has_sky = sky.shape[0] > 0
    coef = np.zeros((4, 4), np.complex128)
    runs = rv.shape[0] > 0
    for p in range(start, n_part, stride):
        for k in range(part_lo[p], part_lo[p + 1]):
            row = order[k]
            s = acc_bin[row]
            b = row_bl[row]
            if s < 0 or b < 0:
                continue
            if runs and cur[b] != s:        # the slot held (if any) stored, this row's loaded
                _move_slot(vis_sum, model_sum, w_sum, rv, rm, rw, b, cur[b], s, ucorr)
                cur[b] = s
            t = tidx[row] - t_off
            a1 = ant1[row]
            a2 = ant2[row]
            swap = a1 > a2
            wr = 0.0
            if has_sky:
                if skybad[t, a1, 0] or skybad[t, a2, 0]:
                    w_row[row] = 0.0
                    continue
                _p_coefficients(sky, t, a1, a2, coef)
            for ci in range(len(ucorr)):
                c = ucorr[ci]
                src = _SWAP[c] if swap else c            # 4-corr index in the row's own orientation
                ks = corr_src[src]
                if ks < 0:
                    continue
                i = 0 if src < 2 else 1
                j = 0 if (src == 0 or src == 2) else 1
                k0 = corr_src[0]
                k1 = corr_src[1]
                k2 = corr_src[2]
                k3 = corr_src[3]
                c0 = coef[src, 0]
                c1 = coef[src, 1]
                c2 = coef[src, 2]
                c3 = coef[src, 3]
                # real coefficients (a linear feed's P): M' from their real parts (the same sums)
                creal = c0.imag == 0 and c1.imag == 0 and c2.imag == 0 and c3.imag == 0
                vs = 0j
                ms = 0j
                ws = 0.0
                for chan in range(n_chan):
                    fs = fsamp_of_chan[chan]
                    if fs < 0 or flag[row, chan, ks]:
                        continue
                    wt = np.float64(weight[row, chan, ks])
                    if not wt > 0:
                        continue
                    v = np.complex128(data[row, chan, ks])
                    if has_diag:
                        if gbad[t, a1, chan, i] or gbad[t, a2, chan, j]:
                            continue
                        gi = ginv[t, a1, chan, i]
                        gj = ginv[t, a2, chan, j]
                        v = v * (gi * np.conj(gj))
                        wt = wt / ((gi.real * gi.real + gi.imag * gi.imag)
                                   * (gj.real * gj.real + gj.imag * gj.imag))
                    if has_sky:
                        fast = False
                        if creal:
                            mr = mi = 0.0
                            if k0 >= 0:
                                x = model[row, chan, k0]
                                mr = c0.real * np.float64(x.real)
                                mi = c0.real * np.float64(x.imag)
                            if k1 >= 0:
                                x = model[row, chan, k1]
                                mr += c1.real * np.float64(x.real)
                                mi += c1.real * np.float64(x.imag)
                            if k2 >= 0:
                                x = model[row, chan, k2]
                                mr += c2.real * np.float64(x.real)
                                mi += c2.real * np.float64(x.imag)
                            if k3 >= 0:
                                x = model[row, chan, k3]
                                mr += c3.real * np.float64(x.real)
                                mi += c3.real * np.float64(x.imag)
                            fast = mr - mr == 0 and mi - mi == 0     # both finite
                        if fast:
                            m = complex(mr, mi)
                        else:
                            m = 0j
                            if k0 >= 0:
                                m += c0 * np.complex128(model[row, chan, k0])
                            if k1 >= 0:
                                m += c1 * np.complex128(model[row, chan, k1])
                            if k2 >= 0:
                                m += c2 * np.complex128(model[row, chan, k2])
                            if k3 >= 0:
                                m += c3 * np.complex128(model[row, chan, k3])
                    else:
                        m = np.complex128(model[row, chan, ks])
                    if swap:                             # V_ab = V_ba^H
                        v = np.conj(v)
                        m = np.conj(m)
                    if one_fs >= 0:
                        vs += wt * v
                        ms += wt * m
                        ws += wt
                    elif runs:                          # the slot's copy of [fs, b, s, c]
                        rv[b, fs, ci] += wt * v
                        rm[b, fs, ci] += wt * m
                        rw[b, fs, ci] += wt
                        wr += wt
                    else:
                        i0 = fs if bin_major else s     # the sums' element [s, b, fs, c]: [i0, b, i2, c]
                        i2 = s if bin_major else fs
                        vis_sum[i0, b, i2, c] += wt * v
                        model_sum[i0, b, i2, c] += wt * m
                        w_sum[i0, b, i2, c] += wt
                        wr += wt
                if one_fs >= 0:
                    i0 = one_fs if bin_major else s
                    i2 = s if bin_major else one_fs
                    vis_sum[i0, b, i2, c] += vs
                    model_sum[i0, b, i2, c] += ms
                    w_sum[i0, b, i2, c] += ws
                    wr += ws
            w_row[row] = wr


@njit(inline="always")
def _real_comb(c0, c1, c2, c3, m0, m1, m2, m3):
    # ((c0 m0 + c1 m1) + c2 m2) + c3 m3 for real c: (real part, imaginary part), the order of the
    # general kernel's real-P path ("Real P coefficients" above)
    return ((((c0 * m0.real + c1 * m1.real) + c2 * m2.real) + c3 * m3.real),
            (((c0 * m0.imag + c1 * m1.imag) + c2 * m2.imag) + c3 * m3.imag))


@njit
def _accumulate_whole(start, stride, vis_sum, model_sum, w_sum, w_row, data, model, flag, weight, order,
                      part_lo, tidx, t_off, ant1, ant2, acc_bin, row_bl, fsamp_of_chan, corr_src,
                      ginv, gbad, sky, skybad, run_lo, run_hi, run_fs, bin_major):
    # _accumulate_corrected for whole samples (all4: D) over the full band -- or a few wide frequency
    # samples, each a run of consecutive channels: channels run_lo[r] .. run_hi[r] - 1 go to frequency
    # sample run_fs[r] (one run: the full band; calibration/misfitcheck.py's sub-bands: 8 runs, each
    # summed and added as the one run is) -- with no sky table or P alone.  The same samples, values and
    # weights; per row, its four correlations are read, corrected and weighted together, once per
    # channel, and summed over the channels in 12 locals (4 correlations x V, M, w) that are added to
    # the sums at the row's end -- the general kernel adds every channel to the sums themselves, so
    # the sums equal its to rounding (another order; the hands kernel's full-band path sums the same
    # way: the same bits as it, tests/test_averaging.py).  Measured on the D step of the issue-16
    # MS (45000 rows x 1024 channels, captured calls replayed): 2.27-2.52 s on one thread against the
    # general kernel's 2.55-2.63 s.  Partitions and threads as _accumulate_corrected (race-free).
    # Two passes over a row's channels: the first decides each sample (flags, weights, pre-applied
    # gains), sums V' and w' and keeps the sample's four weights in ``xb`` (x0 = -1: skipped; a kept
    # weight is >= 0); the second sums w' M' from them.  Each sum adds the same terms in the same
    # order as one pass would (the same bits, but for the sign bit of a sum that is NaN: a fuzz of
    # 1200 cases against the one-pass kernel), where one pass held 20 sums, the 16 P coefficients and
    # the gains at once, more than the registers (its loop spilled to the stack): on 12000 rows x 1024
    # channels, one thread, the kernel took 15-21% less time (session 46; benchmarks/bench_steps.py).
    n_part = part_lo.shape[0] - 1
    n_chan = data.shape[1]
    has_diag = ginv.shape[0] > 0
    has_sky = sky.shape[0] > 0
    coef = np.zeros((4, 4), np.complex128)
    xb = np.empty((n_chan, 4), np.float64)
    k0 = corr_src[0]
    k1 = corr_src[1]
    k2 = corr_src[2]
    k3 = corr_src[3]
    stored = k0 >= 0 and k1 >= 0 and k2 >= 0 and k3 >= 0      # else no sample is whole
    for p in range(start, n_part, stride):
        for k in range(part_lo[p], part_lo[p + 1]):
            row = order[k]
            s = acc_bin[row]
            b = row_bl[row]
            if s < 0 or b < 0:
                continue
            w_row[row] = 0.0
            if not stored:
                continue
            t = tidx[row] - t_off
            a1 = ant1[row]
            a2 = ant2[row]
            swap = a1 > a2
            creal = False
            if has_sky:
                if skybad[t, a1, 0] or skybad[t, a2, 0]:
                    continue
                _p_coefficients(sky, t, a1, a2, coef)
                creal = True
                for x in range(4):
                    for y in range(4):
                        if coef[x, y].imag != 0:
                            creal = False
            wr = 0.0
            for r in range(len(run_fs)):
                # the row's own correlations pp, pq, qp, qq (the outputs swap pq and qp for a > b rows)
                v0 = v1 = v2 = v3 = 0j
                n0 = n1 = n2 = n3 = 0j
                w0 = w1 = w2 = w3 = 0.0
                for chan in range(run_lo[r], run_hi[r]):
                    if fsamp_of_chan[chan] < 0:
                        xb[chan, 0] = -1.0
                        continue
                    if (flag[row, chan, k0] or flag[row, chan, k1] or flag[row, chan, k2]
                            or flag[row, chan, k3]):
                        xb[chan, 0] = -1.0
                        continue
                    x0 = np.float64(weight[row, chan, k0])
                    x1 = np.float64(weight[row, chan, k1])
                    x2 = np.float64(weight[row, chan, k2])
                    x3 = np.float64(weight[row, chan, k3])
                    if not (x0 > 0 and x1 > 0 and x2 > 0 and x3 > 0):
                        xb[chan, 0] = -1.0
                        continue
                    d0 = np.complex128(data[row, chan, k0])
                    d1 = np.complex128(data[row, chan, k1])
                    d2 = np.complex128(data[row, chan, k2])
                    d3 = np.complex128(data[row, chan, k3])
                    if has_diag:
                        if (gbad[t, a1, chan, 0] or gbad[t, a1, chan, 1] or gbad[t, a2, chan, 0]
                                or gbad[t, a2, chan, 1]):
                            xb[chan, 0] = -1.0
                            continue
                        # V' = V / (g_a,i conj(g_b,j)), w' = w |g_a,i g_b,j|^2 (as the general kernel)
                        gp = ginv[t, a1, chan, 0]
                        gq = ginv[t, a1, chan, 1]
                        hp = ginv[t, a2, chan, 0]
                        hq = ginv[t, a2, chan, 1]
                        d0 = d0 * (gp * np.conj(hp))
                        d1 = d1 * (gp * np.conj(hq))
                        d2 = d2 * (gq * np.conj(hp))
                        d3 = d3 * (gq * np.conj(hq))
                        ap = gp.real * gp.real + gp.imag * gp.imag
                        aq = gq.real * gq.real + gq.imag * gq.imag
                        bp = hp.real * hp.real + hp.imag * hp.imag
                        bq = hq.real * hq.real + hq.imag * hq.imag
                        x0 = x0 / (ap * bp)
                        x1 = x1 / (ap * bq)
                        x2 = x2 / (aq * bp)
                        x3 = x3 / (aq * bq)
                    xb[chan, 0] = x0
                    xb[chan, 1] = x1
                    xb[chan, 2] = x2
                    xb[chan, 3] = x3
                    v0 += x0 * d0
                    v1 += x1 * d1
                    v2 += x2 * d2
                    v3 += x3 * d3
                    w0 += x0
                    w1 += x1
                    w2 += x2
                    w3 += x3
                for chan in range(run_lo[r], run_hi[r]):
                    x0 = xb[chan, 0]
                    if x0 < 0:
                        continue
                    x1 = xb[chan, 1]
                    x2 = xb[chan, 2]
                    x3 = xb[chan, 3]
                    m0 = np.complex128(model[row, chan, k0])
                    m1 = np.complex128(model[row, chan, k1])
                    m2 = np.complex128(model[row, chan, k2])
                    m3 = np.complex128(model[row, chan, k3])
                    if has_sky:         # M' = P_a M P_b^H
                        fast = False
                        if creal:
                            r0, i0 = _real_comb(coef[0, 0].real, coef[0, 1].real, coef[0, 2].real,
                                                coef[0, 3].real, m0, m1, m2, m3)
                            r1, i1 = _real_comb(coef[1, 0].real, coef[1, 1].real, coef[1, 2].real,
                                                coef[1, 3].real, m0, m1, m2, m3)
                            r2, i2 = _real_comb(coef[2, 0].real, coef[2, 1].real, coef[2, 2].real,
                                                coef[2, 3].real, m0, m1, m2, m3)
                            r3, i3 = _real_comb(coef[3, 0].real, coef[3, 1].real, coef[3, 2].real,
                                                coef[3, 3].real, m0, m1, m2, m3)
                            z = ((((((r0 + i0) + r1) + i1) + r2) + i2) + r3) + i3
                            fast = z - z == 0           # all eight finite (else the complex products)
                        if fast:
                            m0, m1 = complex(r0, i0), complex(r1, i1)
                            m2, m3 = complex(r2, i2), complex(r3, i3)
                        else:
                            e0 = coef[0, 0] * m0 + coef[0, 1] * m1 + coef[0, 2] * m2 + coef[0, 3] * m3
                            e1 = coef[1, 0] * m0 + coef[1, 1] * m1 + coef[1, 2] * m2 + coef[1, 3] * m3
                            e2 = coef[2, 0] * m0 + coef[2, 1] * m1 + coef[2, 2] * m2 + coef[2, 3] * m3
                            e3 = coef[3, 0] * m0 + coef[3, 1] * m1 + coef[3, 2] * m2 + coef[3, 3] * m3
                            m0, m1, m2, m3 = e0, e1, e2, e3
                    n0 += x0 * m0
                    n1 += x1 * m1
                    n2 += x2 * m2
                    n3 += x3 * m3
                if swap:            # V_ab = V_ba^H: output pq is the row's qp conjugated, and so on
                    v0, v1, v2, v3 = np.conj(v0), np.conj(v2), np.conj(v1), np.conj(v3)
                    n0, n1, n2, n3 = np.conj(n0), np.conj(n2), np.conj(n1), np.conj(n3)
                    w1, w2 = w2, w1
                i0 = run_fs[r] if bin_major else s         # the sums' element [s, b, fs, c]: [i0, b, i2, c]
                i2 = s if bin_major else run_fs[r]
                vis_sum[i0, b, i2, 0] += v0
                vis_sum[i0, b, i2, 1] += v1
                vis_sum[i0, b, i2, 2] += v2
                vis_sum[i0, b, i2, 3] += v3
                model_sum[i0, b, i2, 0] += n0
                model_sum[i0, b, i2, 1] += n1
                model_sum[i0, b, i2, 2] += n2
                model_sum[i0, b, i2, 3] += n3
                w_sum[i0, b, i2, 0] += w0
                w_sum[i0, b, i2, 1] += w1
                w_sum[i0, b, i2, 2] += w2
                w_sum[i0, b, i2, 3] += w3
                wr += ((w0 + w1) + w2) + w3
            w_row[row] = wr


#: :func:`_accumulate_whole` takes at most this many runs of channels of ``sub_bands`` (misfitcheck's: 8;
#: without it one: the full band); more go to the general kernel
WHOLE_MAX_RUNS = 16


def _channel_runs(fsamp, max_runs):
    """``(run_lo, run_hi, run_fs)`` int64 of :func:`_accumulate_whole`: the used channels (fsamp >= 0) cut
    where their frequency sample changes (unused channels inside a run are skipped by the kernel), or
    None when there are none or more than ``max_runs`` runs."""
    used = np.flatnonzero(fsamp >= 0)
    if not len(used):
        return None
    f = fsamp[used]
    cut = np.flatnonzero(f[1:] != f[:-1]) + 1
    if len(cut) + 1 > max_runs:
        return None
    lo = used[np.concatenate([[0], cut])]
    hi = np.concatenate([used[cut - 1] + 1, [used[-1] + 1]])
    return (np.ascontiguousarray(lo, np.int64), np.ascontiguousarray(hi, np.int64),
            np.ascontiguousarray(f[np.concatenate([[0], cut])], np.int64))


@njit(inline="always")
def _move_slot(vis_sum, model_sum, w_sum, rv, rm, rw, b, s_store, s_load, ucorr):
    # baseline b's contiguous copy (_accumulate_hands) stored into the bin-major sums' elements
    # [:, b, s_store, ucorr] (s_store >= 0), then loaded from [:, b, s_load, ucorr] (s_load >= 0)
    for fs in range(rv.shape[1]):
        for ci in range(len(ucorr)):
            c = ucorr[ci]
            if s_store >= 0:
                vis_sum[fs, b, s_store, c] = rv[b, fs, ci]
                model_sum[fs, b, s_store, c] = rm[b, fs, ci]
                w_sum[fs, b, s_store, c] = rw[b, fs, ci]
            if s_load >= 0:
                rv[b, fs, ci] = vis_sum[fs, b, s_load, c]
                rm[b, fs, ci] = model_sum[fs, b, s_load, c]
                rw[b, fs, ci] = w_sum[fs, b, s_load, c]


#: tile edge of :func:`_divide_sums` over its first two axes (a transposed view -- baseline before
#: frequency sample in the accumulator, frequency cell before baseline in the batch -- would otherwise
#: stride tens of kB per element on one side)
_TILE = 16
#: arrays of at least this many elements are divided on the thread pool
_THREADED_MIN = 1 << 16


#: the one signature of :func:`_divide_sums`: any-layout arrays (contiguous ones convert), so the
#: accumulator slices and the batch views (four layout combinations) share one compile (cold start)
_DIVIDE_SIG = ("void(int64, int64, complex128[:, :, :], complex128[:, :, :], float64[:, :, :], "
               "complex128[:, :, :], complex128[:, :, :], float64[:, :, :])")


@njit(_DIVIDE_SIG)
def _divide_sums(start, stride, dst_v, dst_m, dst_w, v, m, w):
    # dst_v = v / w, dst_m = m / w where w > 0, else 0; dst_w = w where w > 0, else 0 (any layouts).
    # Tiles of _TILE x _TILE over the first two axes; the rows of tiles start, start + stride, ... on
    # this thread (_numba.threaded; each writes its own dst[i]: race-free)
    n0, n1, n2 = w.shape
    for i0 in range(start, (n0 + _TILE - 1) // _TILE, stride):
        for j0 in range(0, n1, _TILE):
            for i in range(i0 * _TILE, min((i0 + 1) * _TILE, n0)):
                for j in range(j0, min(j0 + _TILE, n1)):
                    for k in range(n2):
                        wt = w[i, j, k]
                        if wt > 0:
                            # real divisions of each part: the values of numpy's complex / real,
                            # without numba's general complex division
                            x = v[i, j, k]
                            y = m[i, j, k]
                            dst_v[i, j, k] = complex(x.real / wt, x.imag / wt)
                            dst_m[i, j, k] = complex(y.real / wt, y.imag / wt)
                            dst_w[i, j, k] = wt
                        else:
                            dst_v[i, j, k] = 0
                            dst_m[i, j, k] = 0
                            dst_w[i, j, k] = 0


def divide_sums(dst_v, dst_m, dst_w, v, m, w):
    """Weighted averages of accumulated sums into (possibly strided) 3-d outputs: ``v / w``, ``m / w``
    and ``w`` where ``w > 0``, 0 elsewhere (a sample without data)."""
    n_tiles = (w.shape[0] + _TILE - 1) // _TILE
    if w.size >= _THREADED_MIN:
        threaded(_divide_sums, n_tiles, dst_v, dst_m, dst_w, v, m, w)
    else:                       # small: one call on this thread (no pool round trip)
        _divide_sums(0, 1, dst_v, dst_m, dst_w, v, m, w)


#: the one signature of :func:`_gather_divide` (compiled once, at import or from the cache)
_GATHER_SIG = ("void(int64, int64, complex128[:, :, :, ::1], complex128[:, :, :, ::1], "
               "float64[:, :, :, ::1], complex128[:, :, :, ::1], complex128[:, :, :, ::1], "
               "float64[:, :, :, ::1], int64[:, ::1], int64)")


@njit(_GATHER_SIG)
def _gather_divide(start, stride, dst_v, dst_m, dst_w, v, m, w, samp, n_ftile):
    # Items (time cell t, tile of _TILE frequency bins) start, start + stride, ... on this thread
    # (_numba.threaded; an item writes only its own cells dst[t * n_f + f]: race-free).  Per baseline,
    # sample k reads the tile's bins of accumulator bin samp[t, k] (contiguous) and writes each cell's
    # sample k (each cell's (baseline, sample) block fills in order): no transposed stride on either side.
    n_t, n_samp = samp.shape
    n_bl = w.shape[1]
    n_f = w.shape[2]
    n_c = w.shape[3]
    for it in range(start, n_t * n_ftile, stride):
        t = it // n_ftile
        f0 = (it % n_ftile) * _TILE
        f1 = min(f0 + _TILE, n_f)
        for b in range(n_bl):
            for k in range(n_samp):
                s = samp[t, k]
                for f in range(f0, f1):
                    c = t * n_f + f
                    for j in range(n_c):
                        wt = w[s, b, f, j] if s >= 0 else 0.0
                        if wt > 0:
                            # real divisions of each part: the values of numpy's complex / real
                            x = v[s, b, f, j]
                            y = m[s, b, f, j]
                            dst_v[c, b, k, j] = complex(x.real / wt, x.imag / wt)
                            dst_m[c, b, k, j] = complex(y.real / wt, y.imag / wt)
                            dst_w[c, b, k, j] = wt
                        else:
                            dst_v[c, b, k, j] = 0
                            dst_m[c, b, k, j] = 0
                            dst_w[c, b, k, j] = 0


def gather_divide(dst_v, dst_m, dst_w, v, m, w, samp):
    """Every sample of a batch of per-bin cells from accumulated sums, written once.

    ``v, m, w``: the accumulator (n_acc, n_bl, n_f, 4); ``samp`` (n_t, n_samp) int: the accumulator
    bins that are time cell t's samples, in order, -1 = padding; ``dst_*`` (n_t * n_f, n_bl, n_samp, 4),
    C-contiguous: cell t * n_f + f, sample k is ``v[samp[t, k], :, f] / w`` (as :func:`divide_sums`:
    each part divided, 0 where w is not > 0) and 0 for padding -- so ``dst`` need not be zeroed first.
    It is :func:`divide_sums` of ``v[samp[t, k]].transpose(1, 0, 2)`` into ``dst[t*n_f:(t+1)*n_f, :, k]``
    for every (t, k), without the transposed strides (tests/test_kccp_speed.py pins the equality)."""
    samp = np.ascontiguousarray(samp, np.int64)
    n_t, n_samp = samp.shape
    n_f = w.shape[2]
    n_ftile = (n_f + _TILE - 1) // _TILE
    args = (dst_v, dst_m, dst_w, np.ascontiguousarray(v), np.ascontiguousarray(m), np.ascontiguousarray(w),
            samp, n_ftile)
    if n_t * n_f * w.shape[1] * n_samp * w.shape[3] >= _THREADED_MIN:
        threaded(_gather_divide, n_t * n_ftile, *args)
    else:                       # small: one call on this thread (no pool round trip)
        _gather_divide(0, 1, *args)


def corr_map(corr_types):
    """Stored-correlation index (4,) of pp, pq, qp, qq (-1 = absent): the 4-correlation view of
    :func:`alakazam.core.ms_io.to_four_corr` without expanding the data (4 correlations pass through
    in the order pp, pq, qp, qq; any other order is mapped by name)."""
    from .ms_io import CORR_ORDER, canonical_corr

    if canonical_corr(corr_types):
        return np.arange(4, dtype=np.int64)
    out = -np.ones(4, np.int64)
    for i, c in enumerate(corr_types):
        out[CORR_ORDER[c]] = i
    return out


def diag_inverse(diag):
    """``(ginv, gbad)`` of a diagonal Jones table (..., 2): 1 / g, and True where g is zero or
    non-finite or 1 / g is not finite (flagged: the correction flags the samples that use it, as
    :func:`alakazam.jones.algebra.correct_diag_inv`); ``ginv`` is 0 there.  One threaded pass writing
    both outputs once; 1 / g is numpy's complex division of 1 + 0j by g (:func:`_reciprocal`:
    the same bits as ``1.0 / g``, tests/test_diag_inverse.py)."""
    diag = np.ascontiguousarray(diag, np.complex128)
    ginv = np.empty(diag.shape, np.complex128)
    gbad = np.empty(diag.shape, np.bool_)
    if diag.size:
        threaded(_diag_inverse, diag.size, diag.reshape(-1), ginv.reshape(-1), gbad.reshape(-1))
    return ginv, gbad


@njit(inline="always")
def _reciprocal(re, im):
    """(1 + 0j) / (re + i im) as numpy's complex divide loop computes it (Smith's method with the
    reciprocal of the scale multiplied in), for finite non-zero ``re + i im``."""
    if abs(re) >= abs(im):
        rat = im / re
        scl = 1.0 / (re + im * rat)
        return (1.0 + 0.0 * rat) * scl, (0.0 - 1.0 * rat) * scl
    rat = re / im
    scl = 1.0 / (im + re * rat)
    return (1.0 * rat + 0.0) * scl, (0.0 * rat - 1.0) * scl


@njit
def _diag_inverse(start, stride, g, ginv, gbad):
    # blocks of elements on this thread (_numba.threaded): contiguous ranges, each element written once
    n = g.shape[0]
    per = (n + stride - 1) // stride
    for i in range(start * per, min((start + 1) * per, n)):
        re = g[i].real
        im = g[i].imag
        if not (np.isfinite(re) and np.isfinite(im)) or (re == 0 and im == 0):
            ginv[i] = 0j
            gbad[i] = True
            continue
        r, q = _reciprocal(re, im)
        if np.isfinite(r) and np.isfinite(q):
            ginv[i] = complex(r, q)
            gbad[i] = False
        else:
            ginv[i] = 0j
            gbad[i] = True


_NO_DIAG = (np.zeros((0, 1, 1, 2), np.complex128), np.zeros((0, 1, 1, 2), bool))
#: terms that take each correlation on its own with no sky table or P alone use :func:`_accumulate_hands`
#: (measured ~1.9x faster on 9000 rows x 1024 channels than the general kernel; tests/test_accumulate_hands.py
#: compares the two)
_HANDS = True
#: whole samples (all_corr: D) over the full band use :func:`_accumulate_whole`
_WHOLE = True
_NO_SKY = (np.zeros((0, 1, 1, 2, 2), np.complex128), np.zeros((0, 1, 1), bool))
_NO_RUNS = (np.zeros((0, 1, 1), np.complex128), np.zeros((0, 1, 1), np.complex128), np.zeros((0, 1, 1)),
            np.zeros(0, np.int64))


def _bin_major_base(sums):
    """``(sums, bin_major)``: sums that are a (2, 1, 0, 3) transpose of C-contiguous arrays (the solve's
    bin-major batch layout) as those arrays, indexed [fs, b, s, c], and True; others as given, False."""
    if not all(a.flags.c_contiguous for a in sums):
        base = tuple(a.transpose(2, 1, 0, 3) for a in sums)
        if all(a.flags.c_contiguous for a in base):
            return base, True
    return tuple(sums), False


def bin_runs(n_bl, n_fsamp, corr_use=None):
    """The slots a caller keeps across its :func:`accumulate_corrected` calls on bin-major per-channel
    sums (``runs=``; CP over one time cell, ``unit._bin_major``) and hands to :func:`flush_runs` after
    the last: per baseline a contiguous copy of the (bin, baseline) slot its rows are summing into
    (``_accumulate_hands``), so that a slot is loaded and stored once per run of the baseline's rows in
    a bin (a scan) instead of once per call (a block of times).  Its size is n_bl x n_fsamp x the
    correlations used x 40 B (CP per channel, 300 baselines, 1024 channels: 25 MB)."""
    use = np.ones(4, np.bool_) if corr_use is None else np.asarray(corr_use, np.bool_)
    ucorr = np.flatnonzero(use).astype(np.int64)
    shape = (int(n_bl), int(n_fsamp), len(ucorr))
    return (np.zeros(shape, np.complex128), np.zeros(shape, np.complex128), np.zeros(shape),
            np.full(int(n_bl), -1, np.int64), ucorr)


def flush_runs(vis_sum, model_sum, w_sum, runs):
    """Store the slots that ``runs`` (:func:`bin_runs`) still holds into the sums (the layout given to
    :func:`accumulate_corrected`); the sums are complete only after this.  ``runs`` then holds nothing
    (it may serve further calls)."""
    rv, rm, rw, cur, ucorr = runs
    sums, bin_major = _bin_major_base((vis_sum, model_sum, w_sum))
    held = np.flatnonzero(cur >= 0)
    if not len(held):
        return
    if not bin_major:
        raise ValueError("flush_runs: bin-major sums expected (the layout the slots were filled from)")
    # a copy (no arithmetic: the same bits); [:, held, cur[held], ucorr] is (n_fs, n_held, n_uc)
    ib, ic = held[:, None], ucorr[None, :]
    for dst, src in zip(sums, (rv, rm, rw)):
        dst[:, ib, cur[held][:, None], ic] = src[held].transpose(1, 0, 2)
    cur[held] = -1


def accumulate_corrected(vis_sum, model_sum, w_sum, w_row, data, model, flag, weight, rows, tidx, ant1,
                         ant2, acc_bin, row_bl, fsamp_of_chan, corr_src=None, diag=None, sky=None,
                         t_off=0, part_key=None, corr_use=None, all_corr=False, runs=None, sub_bands=False):
    """One fused pass over rows of a chunk: pre-apply, flags -> weights, orientation, accumulation.

    Per sample, with the row's time t = tidx - t_off, antennas a = ant1, b = ant2 and correlation (i, j)::

        V' = V / (g_a,i conj(g_b,j))         (diag: earlier diagonal terms)
        w' = w |g_a,i g_b,j|^2               (V' has noise sigma / |g_a,i g_b,j|; CASA 6.7 gaincal
                                              scales the weights of its pre-apply so, measured)
        M' = S_a M S_b^H                     (sky: D and P terms)
        rows with a > b:  V'_ab = conj(V'_ba[pq <-> qp]), the same for M', FLAG and weight

    and a sample flagged (FLAG, a zero or non-finite g, a non-finite S) or with weight <= 0 adds
    nothing; otherwise ``vis_sum[s, bl, fs, c] += w' V'``, ``model_sum += w' M'``, ``w_sum += w'`` with
    s = acc_bin[row], bl = row_bl[row], fs = fsamp_of_chan[chan].  The result equals (to rounding:
    V / g is computed as V * (1/g)) correcting V by correct_diag and M by corrupt_full (the references
    in tests/reference_kernels.py), the
    swap of the a > b rows, ``np.where(flag, 0,
    weight)`` and ``accumulate`` (tests/reference_kernels.py), without any (row, chan, corr) working copy.

    Parameters
    ----------
    vis_sum, model_sum : complex128 (n_bin, n_bl, n_fsamp, 4); w_sum : float64, same shape
        Accumulators (added to in place).  Note the layout: baseline before frequency sample.
    w_row : float64 (n_row,)
        Written for the rows processed: the sum of the weights they added (0 for skipped rows).
    data, model : (n_row, n_chan, n_corr) complex, as stored (complex64 or complex128)
    flag : bool (n_row, n_chan, n_corr); weight : real (n_row, n_chan, n_corr) (broadcast views fine)
    rows : int (n,)
        Rows of the chunk to process (the others are not touched).
    tidx : int (n_row,)
        Time index of each row into the tables (minus ``t_off``).
    ant1, ant2 : int (n_row,)
        Active-antenna indices.
    acc_bin, row_bl : int (n_row,)
        Accumulator bin and baseline (a < b list) of each row; negative = skip the row.
    fsamp_of_chan : int (n_chan,)
        Frequency sample of each channel (negative = not used).
    corr_src : int (4,), optional
        Stored index of pp, pq, qp, qq (:func:`corr_map`; default 0..3).
    diag : complex (n_t, n_ant, n_chan, 2), optional
        Product of the earlier diagonal terms; NaN = flagged.
    sky : complex (n_t, n_ant, n_chan or 1, 2, 2), optional
        Sky-side product (D terms, parallactic angle); non-finite = flagged.  A channel axis of 1
        serves every channel (P alone, :func:`alakazam.calibration.chain.preapply_tables`).
    part_key : int (n_row,), optional
        The key that spreads the rows over the threads (default ``row_bl``): the rows of one key go to
        one thread, in their order, so the accumulator elements that rows of one key add to must not
        be added to by rows of another key (a caller that folds the baseline into ``acc_bin`` passes
        ``row_bl`` 0 and the baseline here).
    corr_use : bool (4,), optional
        The 4-correlation indices (pp, pq, qp, qq, in the a < b orientation) to accumulate (default all):
        a solve passes the correlations its term uses (:attr:`alakazam.jones.terms.JonesType.corr`),
        so G and K sum only the parallel hands and KC, CP only the cross hands; the others stay 0 (no
        weight) and add nothing to ``w_row``.
    all_corr : bool
        Only samples whose four correlations are all usable (stored, unflagged, weight > 0, every
        pre-applied hand valid) are summed (default False: each correlation on its own).  A solve
        passes True for a term whose model mixes the correlations (D: V_pq = M_pq + d_pq,a M_qq + ...,
        from the averaged model of the other correlations): a correlation flagged alone (a dead feed's)
        would otherwise average its model to 0 in a (bin, baseline) where the others still have data,
        and the fit would put the missing d_pq,a M_qq into the other antennas' leakage (measured: a dead
        Y feed moved every other antenna's d_pq by a common 0.01-0.02 where removing the antenna whole
        moved them by 2e-4).
    runs : optional
        :func:`bin_runs` of these sums, kept by a caller across its calls on bin-major per-channel sums
        (then :func:`flush_runs` after the last call completes the sums; every sum bit for bit the same).
        Without it such a call stores its slots before it returns.  Unused by other layouts.
    sub_bands : bool
        ``fsamp_of_chan`` cuts the band into a few runs of consecutive channels that the caller folds
        into one sample after the pass (calibration/misfitcheck.py): with ``all_corr`` each run is summed
        by the whole-sample kernel as a full band is (a row's channels in locals, added once), not by
        the general kernel channel by channel (D over the full band: x0.86 of G per visibility, x1.51
        with its 8 sub-bands on the general kernel, issue 16).  Default False: only one frequency
        sample takes the whole-sample kernel (other layouts keep their kernels' bits).
    """
    rows = np.asarray(rows, np.int64)
    row_bl = np.ascontiguousarray(row_bl, np.int64)
    acc_bin = np.ascontiguousarray(acc_bin, np.int64)
    if corr_src is None:
        corr_src = np.arange(4, dtype=np.int64)
    corr_src = np.ascontiguousarray(corr_src, np.int64)
    fsamp = np.ascontiguousarray(fsamp_of_chan, np.int64)
    n_bl = vis_sum.shape[1]
    if len(fsamp) != data.shape[1] or (len(fsamp) and fsamp.max(initial=-1) >= vis_sum.shape[2]):
        raise ValueError("fsamp_of_chan: one index < n_fsamp per channel expected")
    # rows grouped by baseline (stable: row order kept within a baseline), cut into partitions of
    # whole baselines with about the same number of rows each
    bl = row_bl[rows]
    keep = (bl >= 0) & (acc_bin[rows] >= 0)
    if not keep.all():
        rows, bl = rows[keep], bl[keep]
    if part_key is not None:        # the partition key instead of the baseline
        bl = np.asarray(part_key, np.int64)[rows]
        n_bl = max(1, len(np.unique(bl)))
    srt = np.argsort(bl, kind="stable")
    order = np.ascontiguousarray(rows[srt])
    bl_sorted = bl[srt]
    n_part = max(1, min(numba.get_num_threads(), n_bl))
    cuts = [0]
    for p in range(1, n_part):
        k = p * len(order) // n_part
        if len(order):
            k = int(np.searchsorted(bl_sorted, bl_sorted[min(k, len(order) - 1)], side="left"))
        cuts.append(max(k, cuts[-1]))
    cuts.append(len(order))
    part_lo = np.asarray(cuts, np.int64)
    if diag is not None:
        ginv, gbad = diag_inverse(diag)
    else:
        ginv, gbad = _NO_DIAG
    if sky is not None:
        sky = np.asarray(sky, np.complex128)
        fin = np.isfinite(sky)
        skybad = np.ascontiguousarray(~fin.all(axis=(-1, -2)))
        sky = np.ascontiguousarray(np.where(fin, sky, 0))
    else:
        sky, skybad = _NO_SKY
    use = np.ones(4, np.bool_) if corr_use is None else np.ascontiguousarray(corr_use, np.bool_)
    if use.shape != (4,):
        raise ValueError("corr_use: 4 bools (pp, pq, qp, qq) expected")
    # sums that are a (2, 1, 0, 3) transpose of C-contiguous arrays (the solve's bin-major batch layout)
    # go to the kernels as those arrays (bin_major): each kernel then has one specialisation for the
    # solve's two layouts instead of a C-contiguous and an any-layout one (~2.5 s of compile, issue 16)
    sums, bin_major = _bin_major_base((vis_sum, model_sum, w_sum))
    if _HANDS and not all_corr and (sky.shape[0] == 0 or sky.shape[2] == 1):
        # each correlation on its own, no sky table or P alone: the hands kernel (K, G, KC, CP)
        fs_used = fsamp[fsamp >= 0]
        one_fs = int(fs_used[0]) if len(fs_used) and (fs_used == fs_used[0]).all() else -1
        ucorr = np.flatnonzero(use).astype(np.int64)
        # per-channel bin-major sums partitioned by baseline: summed per (bin, baseline) slot in a
        # contiguous copy (bin_runs), the caller's (kept across calls) or this call's (stored at its end)
        flush = False
        if bin_major and one_fs < 0 and part_key is None:
            if runs is None:        # this call's slots, stored at its end
                runs, flush = bin_runs(sums[0].shape[1], sums[0].shape[0], use), True
            elif (runs[0].shape != (sums[0].shape[1], sums[0].shape[0], len(ucorr))
                  or not np.array_equal(runs[4], ucorr)):
                raise ValueError("runs: bin_runs(n_bl, n_fsamp, corr_use) of these sums expected")
            rv, rm, rw, cur = runs[:4]
        else:
            rv, rm, rw, cur = _NO_RUNS
        threaded(_accumulate_hands, len(part_lo) - 1, *sums, w_row, data, model, flag,
                 weight, order, part_lo, np.ascontiguousarray(tidx, np.int64), int(t_off),
                 np.ascontiguousarray(ant1, np.int64), np.ascontiguousarray(ant2, np.int64),
                 acc_bin, row_bl, fsamp, corr_src, ginv, gbad, sky, skybad, ucorr, one_fs, bin_major,
                 rv, rm, rw, cur)
        if flush:
            flush_runs(vis_sum, model_sum, w_sum, runs)
        return
    if runs is not None:        # slots held from a hands-kernel call: stored before adding in place
        flush_runs(vis_sum, model_sum, w_sum, runs)
    runs_w = (_channel_runs(fsamp, WHOLE_MAX_RUNS if sub_bands else 1) if _WHOLE and all_corr and use.all()
              else None)
    if runs_w is not None and (sky.shape[0] == 0 or sky.shape[2] == 1):
        # whole samples (D) over the full band or a few wide sub-bands, no sky table or P alone: the
        # whole-sample kernel
        threaded(_accumulate_whole, len(part_lo) - 1, *sums, w_row, data, model, flag,
                 weight, order, part_lo, np.ascontiguousarray(tidx, np.int64), int(t_off),
                 np.ascontiguousarray(ant1, np.int64), np.ascontiguousarray(ant2, np.int64),
                 acc_bin, row_bl, fsamp, corr_src, ginv, gbad, sky, skybad, *runs_w, bin_major)
        return
    threaded(_accumulate_corrected, len(part_lo) - 1, *sums, w_row, data, model, flag,
             weight, order, part_lo, np.ascontiguousarray(tidx, np.int64), int(t_off),
             np.ascontiguousarray(ant1, np.int64), np.ascontiguousarray(ant2, np.int64),
             acc_bin, row_bl, fsamp, corr_src, ginv, gbad, sky, skybad, use, bool(all_corr), bin_major)
