"""Sample flags of the solve beyond the per-row MAD (:mod:`alakazam.core.rfi`): bad values and RFI
that a statistic across channels of one row cannot see.

Run on the raw data of a chunk as read (before pre-apply and accumulation), from
:func:`alakazam.unit._iter_group_chunks`, by :func:`flag_chunk` in this order: bad values, channel
statistics (:func:`flag_persistent`), the per-row MAD (:func:`alakazam.core.rfi.mad_flag`, on rows
with at least :data:`~alakazam.core.rfi.MIN_SOLVE_MAD_CHANNELS` usable channels: over fewer, a median and
MAD flag clean samples; after the channel statistics, so that a persistent RFI channel does not bias
the row's median and MAD), and
the extension again (:func:`extend`).

:func:`flag_bad_values` (always on)
    A sample is flagged when its DATA or weight (the solve's: 1/SIGMA^2 for DATA, WEIGHT for
    CORRECTED_DATA, :mod:`alakazam.core.weights`) is NaN/Inf, or the weight < 0; a (row, channel) is flagged
    in every correlation when MODEL_DATA is NaN/Inf in any correlation (the model-side pre-apply
    mixes the four correlations) or zero in all of them (a zero model carries no gain information and
    would bias the weighted averages ``sum w V / sum w`` against ``sum w M / sum w``), or when DATA is
    exactly zero in all of them (a correlator dropout left unflagged: no signal, and the solvers took
    it for a dead antenna's data -- CASA's solvers use it unless flagdata clipzeros ran first).  A
    sample whose DATA is exactly zero in its correlation alone is flagged too (a dropout of one
    correlation or feed: a reference antenna's Y feed at exactly 0 in one scan stayed the reference,
    its hand's gains got an arbitrary phase and a target 10% decorrelated; review 55c; data with noise
    are never exactly 0, and cross hands stored as zeros carry no information either).

:func:`flag_persistent` (with ``rfi_threshold > 0``)
    Statistics per *row group* -- the rows of a block of about :data:`BLOCK_INTEGRATIONS` consecutive
    integrations of one scan, counted from the scan's first integration (:func:`stat_blocks`; memory
    tiers 2 and 3 read whole blocks, :func:`block_reads`, so the flags do not depend on the tier) -- of
    ``x = |V| / |M|`` (|V| where M = 0) over the unflagged cross-correlation samples of the parallel
    hands, per channel:

    0. *row level*: L_r = the median of x over the row's unflagged channels;
    1a. *no signal* (per row and parallel hand, in the same pass; decided per block and hand, as
       every statistic here: a scan may span several reads of tiers 2/3, :func:`block_reads`): the
       lag-one channel coherence of z = V conj(M), S = the sum of the unit phasors of
       z_{c+1} conj(z_c) over the Q unflagged channel pairs (c, c + 1), c every (n_chan // 256)-th
       channel (as the row level), summed over a baseline's rows of the group for the baseline;
       t = |S|^2 / Q is ~Exp(1) for noise (P(t > 16) = 1e-7) and ~Q rho^2 with signal (rho -> 1 at
       high per-sample SNR s, ~0.785 s^2 at low; a delay or a bandpass slope does not lower it: the
       phase step between adjacent channels is the same across the band; unit phasors, so an RFI
       channel of any strength weighs one pair -- with |z_{c+1} conj(z_c)| instead, one channel of
       20x the source on 130 made live rows look signal-free).  Carry no signal:

       - *a row* with t < DEAD_T and t / Q below ROW_REL (1/5) of a reference t / Q of its
         baseline's rows of the block that see the source: the median row's, when the baseline has
         t >= LIVE_T and that median is >= ROW_REF_FRAC, or the best row's, when its
         t >= min(STRONG_ROW_T, max(DEAD_T, ROW_REF_BEST Q)) -- an antenna or feed dying (or coming
         back) within the block.  Relative to t / Q, so a row with most channels flagged keeps its
         clean ones; the median, so that rows of <= 16 channels (t <= 15 < DEAD_T) have one; the best
         row, so that an antenna alive in a single integration of the block still gives one (noise
         never does: t >= DEAD_T; a weak baseline's best row rarely reaches ROW_REF_BEST Q);
       - *a baseline* with t < DEAD_T while some baseline of the group has t >= STRONG_SEG_T (the
         source seen at 10 sigma), unless the first-order test (:func:`_first_order_p`: the delay
         spectrum of the unit phasors of z, summed over the rows; p-value at FIRST_ORDER_P) finds
         signal in it, or it belongs to a *weak* antenna (no baseline with t >= LIVE_T) whose
         baselines' first-order p-values combined (Fisher) show signal -- or, failing that, whose
         baselines' delay spectra aligned on the delays of the live baselines between its partners
         do (:func:`_aligned_signal`) -- while its other antenna is not a weak antenna without
         signal (:func:`_weak_antennas`).  The first-order test sees
         an SNR s per sample over n channels and R rows as F ~ R (1 + 0.785 n s^2) where the
         coherence has ~R n s^4, and is scale-free: a dead antenna noisier than the array is as
         dead as one at its noise (a level test would take it for a live noisy one), a live antenna
         10x noisier than the others at an SNR of 3 per sample is seen (the coherence alone took it
         for dead, all its solutions flagged).  Per baseline the search over L delays costs as much
         as one baseline's signal brings: at an SNR of 2 (0.2 on its baselines, 64 channels x 8-10
         integrations) Fisher's combination found that antenna in about half of the blocks (a G
         solution flagged; 41% of its samples over 8 chunks); aligned -- a baseline's delay is its
         antennas' difference, so with the partners' delays one unknown delay is left and the m
         baselines add up, Gamma(m R, 1) for noise -- 16% (the hands of gain 0.6); decided in each
         block alone, as before, so a dead block of that antenna among its live ones is flagged
         (tests/test_weak_antenna_aligned.py);
       - *an antenna's baselines together* in a block where their summed t is at the noise level,
         far below the antenna's own typical (median) level over the chunk's blocks, while the
         block's other antennas are near theirs (:class:`_AntennaLevels`; decided after the chunk's
         blocks: where no single baseline of a block reaches STRONG_SEG_T -- 8 channels, one
         integration at <= 100 channels).

       That hand's correlation and the cross hands of such rows are flagged in every channel (the
       other hand is kept: a dead feed) and leave the statistics (ratios and levels: the live rows of
       an antenna dying within the block are no bursts).  Only a baseline with t >= LIVE_T (6 sigma:
       the source seen) whose rows are alike (no row's t / Q below ROW_REL of the median row's) is
       judged against its own scatter in 1b.; the others keep the group's common scatter, which
       flags a noise-only baseline among live ones as before 1c.  Without 1a., 1c. let a dead
       antenna's noise through (each of its baselines judged against its own noise): a dead scan
       inside a bandpass solution interval halved that antenna's bandpass, a dead reference put K
       83 ns off, two dead antennas lost a K scan, an amplitude-only gain of a dead scan was kept
       (tests/test_review_dead_scan_bandpass.py, test_review_dead_refant.py,
       test_review_two_dead.py); with the row test relative to the baseline's median row, an antenna
       dying within a block at <= 100 channels was let through, G 0.41 off
       (tests/test_review_noisy_merge.py).  Limits: at 16 channels or fewer a row's t / Q is a poor
       statistic (P(t / Q > 0.12) = 16% for a noise row of 16 channels): an antenna dying within a
       block there keeps ~4% of its dead samples (main 8%), the rest judged against the common scatter
       (its baseline is not 'live'), and an antenna alive in fewer than half of the block's rows has
       no reference row at all;
       a live antenna too noisy for the aligned first-order test over a block (~0.785 n s^2
       sqrt(m R) < ~7, s the per-sample SNR of its baselines; it needs a partner with live
       baselines to the others) is flagged as dead in that block (measured, 7 antennas x 64
       channels x 8 integrations, gains 0.6-1.4: at s = 0.2 / 0.15 / 0.1 for a unit gain 17% / 65%
       / 98% of its samples flagged, 46% / 81% / 100% before; at 256 channels 1% / 1% / 23%, was 1%
       / 9% / 50%), and a dead correlator baseline of a live antenna much noisier than
       the others is kept (both antennas vouched for; common scatter);
    1. *bursts* (per baseline, across the group's integrations): a row whose L_r exceeds the
       baseline's median level by more than ``max(threshold * sigma, BURST_REL * median)`` is flagged
       in every channel (broadband RFI: the per-row MAD cannot see it, all channels rise together);
    1b. *time direction* (per channel, across the rows of the group) on the normalised ratio
       y = ``x / L_r`` (the gains and the source flux cancel, the bandpass shape remains): median m_c
       over the rows; then, per baseline b, its scale r_b (1c.); then sigma_c = 1.4826 MAD over the
       rows of ``|y - m_c| / r_b`` (the typical baseline's scatter); a sample with
       ``|y - m_c| / r_b > threshold * sigma_c`` and ``|y - m_c| > MIN_REL_DEV m_c`` is flagged
       (intermittent narrow-band RFI, judged against the scatter of its own baseline);
    1c. *baseline scale* (per baseline and parallel hand, from the group's data): s_b = the median of
       ``|y - m_c|`` over the baseline's non-burst rows of the group in every
       ``n_chan // SCALE_CHANNELS``-th channel (its noise and its bandpass's offset from m_c); an
       antenna model ``log s_ab ~ u_a + u_b`` fitted by least squares, then again without the
       baselines whose residual exceeds FIT_CLIP robust sigmas (:func:`_antenna_fit`); the baseline's
       own s_b counts up to EXCESS_MAX times its antennas' ``exp(u_a + u_b)`` (more is RFI in much of
       that baseline's samples, which its antennas' other baselines do not share); r_b = that over its
       median over the group's baselines (the typical baseline), its log shrunk towards 0 by its own
       estimation variance v = 2 / n_samples (``log r (1 - v / log^2 r)``, 0 where ``log^2 r < v``: a
       few samples' scatter does not make a clean baseline look quieter or noisier than it is);
       r_b = 1 with fewer than :data:`MIN_SCALE_SAMPLES` samples or s_b = 0.  An antenna with a warm
       receiver, a bad LNA or a higher Tsys has a larger r_b on all its baselines, whether or not
       SIGMA/WEIGHT describe it.  Without 1c. (one sigma_c for all rows: the MAD of a mixture of
       baselines of different noise) an antenna at 3x / 5x / 10x the noise of the others lost 1.2% /
       12% / 58% of its clean samples on a 5-antenna, 8-channel MS, and the row extension then whole
       rows (tests/test_noisy_antenna_flags.py).  Not from the weights: the flags are the same
       whatever SIGMA/WEIGHT say (:func:`flag_persistent` has none), and a baseline's bandpass offset,
       which no weight describes, is part of what 1b. compares.  Limit: a baseline with RFI in half or
       more of its samples of a block keeps up to EXCESS_MAX of scale and its antennas' clean scale
       no longer tells (measured, random-phase RFI of 3x the source on one baseline of 21: 98% / 96%
       / 60% / 20% of it found at 10% / 30% / 50% / 70% of its samples, against 98% / 98% / 100% / 80%
       with one sigma_c);
    2. *persistent channels* (across channels, on the m_c of 1b): d_c = m_c - r_c, r_c the running
       median of m over the 7 channels centred on c (a smooth bandpass cancels); with
       sigma_d = 1.4826 MAD(d) over the channels, channel c is flagged in every row of the group
       when ``d_c > max(threshold * sigma_d, CHANNEL_REL_DEV * r_c)`` (one-sided: RFI adds power, a
       band edge that rolls off is kept) or when its scatter sigma_c exceeds both ``SCATTER_RATIO``
       times the running median of the scatter and ``CHANNEL_REL_DEV * m_c`` (RFI of random phase)
       -- a channel that carries RFI in every row (a satellite), which the per-row MAD only partly
       catches because the weakest RFI samples look normal;
    3. *extension within the group* (CASA flagdata extend: growtime / growfreq / extendpols; run
       again after the per-row MAD, :func:`extend`): a
       channel with more than ``GROW`` of its samples flagged is flagged in every row of the group, a
       row with more than ``GROW`` of its channels flagged is flagged in every channel, and every
       flag from 1-3 covers all correlations of the sample.

    Groups with fewer than :data:`MIN_ROWS` rows and channels with fewer than :data:`MIN_ROWS` usable
    samples are left alone; channel statistics need :data:`~alakazam.core.rfi.MIN_CHANNELS` channels.
    The cost is one row-parallel pass (x of the whole row in float32,
    :func:`alakazam.core.rfi.flat_row_ratios`; a median per row and parallel hand over at most
    MAX_STAT_SAMPLES channels; the normalised ratios, float32) and two quickselects per (channel,
    parallel hand) over at most MAX_STAT_SAMPLES rows of a block (and 1c.: a median per (channel,
    hand) and one pass over every n_chan // SCALE_CHANNELS-th channel, a quickselect per baseline and
    hand, an n_ant x n_ant least squares per hand: 7.9 ms per chunk of 19680 rows x 1024 channels (3
    blocks), while 1b.'s test, ordered so that its branch is
    predictable and with NaN left to the comparison, takes 24.9 ms as before; the whole of
    :func:`flag_chunk` 0.502 / 0.506 s before, 0.500 / 0.517 s after, medians of 9 alternating runs in
    one process, two sessions, load ~1.2; 1a.: the coherence in the row pass, one unit phasor per
    channel pair, then per block a numba pass over the rows (:func:`_no_signal_rows`, < 1 ms per
    chunk) and the first-order FFTs of the candidate baselines only (~13 ms for a dead antenna of 27
    at 256 channels x 16 integrations; the aligned test of a weak antenna that Fisher's combination
    does not vouch for adds one FFT per partner, b0's baselines, and the alignment, ~0.6 ms per
    antenna and hand at 26 baselines x 512 delay bins: run in every block of a dead antenna of 27 in
    12 blocks x 8 integrations x 256 channels, 77-98 ms of flag_chunk's 0.77-1.2 s, +8-12%; run only
    where Fisher's combination hints at signal (ALIGNED_FISHER_P), in none of them; nothing where no
    antenna is weak or Fisher's combination vouches for it -- that chunk clean, or with its
    10x-noisier antenna -- session 36, load ~3); with 1a. and 1c.
    :func:`flag_chunk` of 19680 rows x 1024 channels 1.238 s against 1.146 s without them (+8%; the
    prototype's Python loop over baselines +14%), of 5616 rows x 256 channels +13% (+16% with a dead
    antenna; the prototype +58% / +103%):
    best of 5 alternating in one process, load ~4), then the extension's two row passes on the thread
    pool: measured on 45000 rows x 1024
    channels x 4 correlations (1.5 GB of DATA), 0.5 s for the channel statistics, 0.37 s for the
    per-row MAD, 0.23 s for the bad values, 0.12 s for the final extension (2 cores, session 26's
    machine).  Since session 30 the bad values are computed in the channel statistics' pass (each
    row's data read once), the row ratios and bad values take a flat vectorised loop on C-contiguous
    rows, and the extension reads each channel's flags as one word: on 9000 of those rows (one
    thread, CPU; a machine ~3x slower than session 26's) the whole of :func:`flag_chunk` 1.33 ->
    0.94 s, the same flags bit for bit.  Since session 31 the per-row MAD skips its second quickselect
    when no value can exceed the limit (:func:`alakazam.core.rfi._mad_clears`) and takes a parallel
    hand's median from the row level when both are over the same values (< 512 channels,
    :func:`alakazam.core.rfi._mad_flag_rows`), the row coherence computes each channel's z once at
    stride 1, :func:`_levels_and_ratios` writes the normalised ratios 16 rows at a time
    (:data:`BUF_TILE`) and one buffer serves every group: one thread, thread CPU, best of 6 / 4
    alternating in one process (load ~3 on the 2 cores), 9000 rows x 1024 channels: 0.898 -> 0.691 s
    (row pass 0.588 -> 0.432, per-row MAD 0.199 -> 0.158); 120960 rows x 128 channels x 64 antennas:
    2.781 -> 1.794 s (row pass 1.494 -> 1.157, per-row MAD 1.021 -> 0.371); 2 threads, wall 0.56 ->
    0.47 s and 2.35 -> 1.95 s; the same flags bit for bit (both MSs as read and with injected RFI, a
    dead antenna and feed, NaN, zero model and data, 1 to 600 channels).  The row coherence in three
    passes with its pair loop vectorised was another 1.6-1.9x there (~0.2 s on the 120960 rows) but
    ~1 s more of cold-start compile: not taken.  Since session 32 the row pass computes the ratios and
    the bad values' sample codes in one flat loop (:func:`_ratios_codes`: each row's DATA and MODEL read
    once) and copies a row's flags to ``prior`` by a flat loop: one thread, thread CPU, best of 8 / 5
    alternating in one process (load ~3 on the 2 cores), 9000 rows x 1024 channels: 0.626 -> 0.563 s
    (row pass 0.387 -> 0.332); 120960 rows x 128 channels: 1.918 -> 1.675 s (row pass 1.263 ->
    1.061); the same flags bit for bit (as above); cold start ~0.2 s more compile CPU (the row pass
    kernel recompiled without cache, min of 10 alternating: 2.55 -> 2.75 s; the first flag_chunk's
    10-15 s scatter by +-2 s with the load).  Measured and not taken: the per-sample decisions
    branch-free (1.8x faster alone, slower in the row pass), the coherence's unit phasors in a
    vectorised second loop (no faster here), a quickselect partitioning into a second buffer (no
    faster than the in-place one).
"""

from __future__ import annotations

from functools import partial

import numba
import numpy as np
from numba import types
from numba.extending import overload

from .._numba import njit, threaded
from . import prefault, rfi
from ..errors import AlakazamError
from .rfi import (MAD_TO_SIGMA, MAX_STAT_SAMPLES, MIN_CHANNELS, _median, _row_ratios64,
                  flat_row_ratios, flat_rows)

#: minimum rows of a group (and usable samples of a channel) for statistics
MIN_ROWS = 4
#: extension: a channel (row) with more than this fraction of its samples flagged is flagged whole
GROW = 0.5
#: a sample must also deviate from its channel's median (normalised) level by this fraction
MIN_REL_DEV = 0.2
#: a persistent channel must also exceed its neighbours' median level by this fraction (a peaked
#: bandpass sampled by few channels legitimately stands ~25% above the running median at its peak)
CHANNEL_REL_DEV = 0.5
#: ... or have a scatter across the rows this many times its neighbours' median scatter
SCATTER_RATIO = 2.0
#: a burst raises a row's level (median over channels) by more than this fraction of the baseline's
#: median level in the group
BURST_REL = 0.5
#: half width of the running median across channels
HALF_WINDOW = 3
# medians and MADs use at most about rfi.MAX_STAT_SAMPLES samples: the row level every
# (n_chan // MAX_STAT_SAMPLES)-th channel, the per-channel statistics every
# ceil(n_rows / MAX_STAT_SAMPLES)-th row of the block (deterministic, the same in every tier); every
# sample is still tested against them
#: a row group is a block of this many consecutive integrations of one scan (:func:`stat_blocks`)
BLOCK_INTEGRATIONS = 8
#: the baseline scale (1c.) from every (n_chan // SCALE_CHANNELS)-th channel: 32 channels of 8
#: integrations are 256 deviations (MAX_STAT_SAMPLES), a scale within ~7%
SCALE_CHANNELS = 32
#: a baseline's scale needs this many deviations (fewer: r_b = 1, the typical baseline's)
MIN_SCALE_SAMPLES = 16


@njit(inline="always")
def _bad_row(d1, m1, use_model, wr, fr, orow, code, words, row, t):
    # one row of _bad_values: orow = fr plus the row's bad values; their number.  ``d1``, ``m1``: the
    # row's flat DATA and MODEL views (rfi.flat_rows; ``m1`` not read without a model), ``wr``, ``fr``,
    # ``orow`` its (n_chan, n_corr) weight, flag and output views.  A flat (vectorised) pass over the
    # samples first (one code byte each: bit 0 DATA non-finite, 1 DATA non-zero, 2 MODEL non-finite,
    # 3 MODEL non-zero), then the per-channel decisions from the codes.  ``code``: the caller's scratch
    # of at least n_chan * n_corr bytes, allocated once per kernel call (one allocation per row made
    # narrow rows -- 1-8 channels -- 2.5-6x slower than nested loops).  One loop for every row width
    # and layout (the callers pass C-contiguous DATA and MODEL): the solve compiles one (issue 16).
    # ``words``, ``row``, ``t``: :func:`_decide_row`'s (the word views or None, the row, the thread)
    n = len(d1)
    if use_model:
        for i in range(n):
            v = d1[i]
            m = m1[i]
            code[i] = (np.uint8(not (np.isfinite(v.real) and np.isfinite(v.imag)))
                       | (np.uint8((v.real != 0) | (v.imag != 0)) << 1)
                       | (np.uint8(not (np.isfinite(m.real) and np.isfinite(m.imag))) << 2)
                       | (np.uint8((m.real != 0) | (m.imag != 0)) << 3))
    else:
        for i in range(n):
            v = d1[i]
            code[i] = (np.uint8(not (np.isfinite(v.real) and np.isfinite(v.imag)))
                       | (np.uint8((v.real != 0) | (v.imag != 0)) << 1))
    return _decide_row(use_model, wr, fr, orow, code, words, row, t, orow.shape[1])


@njit(inline="always")
def _bad_decide(use_model, wr, fr, orow, code):
    # _bad_row's per-sample decisions from the row's sample codes; the number of new bad values: the
    # byte path, for layouts without a word type (:data:`_WORD`: 3 correlations).  Rows of 1, 2 or 4
    # correlations take the word path (:func:`_bad_decide_words`, 15x faster per sample: the loops
    # below branch per sample; the same flags and count), chosen by :func:`_decide_row`
    n_chan, n_corr = orow.shape
    nb = 0
    for chan in range(n_chan):
        acc = np.uint8(0)
        for c in range(n_corr):
            acc |= code[chan * n_corr + c]
        # all DATA exactly 0 (a correlator dropout), or a MODEL non-finite or all 0 in the channel
        mbad = (acc & 2) == 0 or (use_model and ((acc & 4) != 0 or (acc & 8) == 0))
        for c in range(n_corr):
            if fr[chan, c]:
                orow[chan, c] = True
                continue
            w = np.float64(wr[chan, c])
            # (a sample's DATA non-finite, or exactly 0: a dropout of its correlation)
            if mbad or (code[chan * n_corr + c] & 3) != 2 or not np.isfinite(w) or w < 0:
                orow[chan, c] = True
                nb += 1
            else:
                orow[chan, c] = False       # every element written: ``out`` may be np.empty
    return nb


@njit(inline="always")
def _bad_word(wr, chan, n_corr):
    # the weight's part of a channel's word of bad samples: bit 0 of byte c set where the weight of
    # correlation c is NaN/Inf or < 0 (int64)
    out = np.int64(0)
    for c in range(n_corr):
        w = np.float64(wr[chan, c])
        if not np.isfinite(w) or w < 0:
            out |= np.int64(1) << (8 * c)
    return out


@njit(inline="always")
def _bad_decide_words(use_model, wr, fw, ow, cw, n_corr):
    # _bad_decide on one unsigned word per channel (byte c = correlation c: the bytes of a numpy
    # bool or code array in memory order, whatever the byte order): ``fw`` the row's flags as read,
    # ``ow`` the output, ``cw`` the sample codes (_ratios_codes' bits).  Every word is worked in
    # int64 (no unsigned promotion rules); a flag byte other than 0 counts as True, as numpy's bool.
    # The weight's bad bytes once per row when the weights do not vary with channel (a broadcast
    # WEIGHT row: channel stride 0), else per channel (WEIGHT_SPECTRUM)
    n_chan = len(ow)
    ones = np.int64(0)
    for c in range(n_corr):
        ones |= np.int64(1) << (8 * c)
    low7 = ones * 0x7F
    top = 8 * (n_corr - 1)
    per_chan = wr.strides[0] != 0
    wbad = np.int64(0) if per_chan else _bad_word(wr, 0, n_corr)
    nb = np.int64(0)
    for chan in range(n_chan):
        u = np.int64(cw[chan])
        acc = u
        for k in range(1, n_corr):          # the codes of the channel's correlations OR-ed (byte 0)
            acc |= u >> (8 * k)
        # all DATA exactly 0 (a correlator dropout), or a MODEL non-finite or all 0 in the channel
        mbad = ((acc & 2) == 0) or (use_model and ((acc & 4) != 0 or (acc & 8) == 0))
        # a sample's DATA non-finite (bit 0) or exactly 0 (bit 1 clear: a dropout of its correlation)
        bad = (u & ones) | (~(u >> 1) & ones) | (ones if mbad else np.int64(0))
        bad |= _bad_word(wr, chan, n_corr) if per_chan else wbad
        f = np.int64(fw[chan])
        f = ((((f & low7) + low7) | f) >> 7) & ones         # 1 in each non-zero byte
        ow[chan] = f | bad
        nb += (((bad & ~f) * ones) >> top) & 0xFF           # the bytes newly bad (each 0 or 1) summed
    return nb


@njit(inline="always")
def _ratios_codes(d1, m1, use_model, x1, code):
    # rfi._ratios_flat (x of the row in float32; the number of samples to redo in float64: the same
    # per-sample rfi._ratio_sample) and _bad_row's sample codes in one flat loop: the row's DATA and
    # MODEL read once (the same x and codes)
    n = len(d1)
    n_bad = np.int64(0)
    if use_model:
        for i in range(n):
            v = d1[i]
            m = m1[i]
            x, ok, vz, mz = rfi._ratio_sample(v, m)
            x1[i] = x
            n_bad += np.int64(not ok)
            code[i] = (np.uint8(not (np.isfinite(v.real) & np.isfinite(v.imag)))
                       | (np.uint8(not vz) << 1)
                       | (np.uint8(not (np.isfinite(m.real) & np.isfinite(m.imag))) << 2)
                       | (np.uint8(not mz) << 3))
    else:
        for i in range(n):
            v = d1[i]
            x, ok, vz = rfi._ratio_sample_nomodel(v)
            x1[i] = x
            n_bad += np.int64(not ok)
            code[i] = (np.uint8(not (np.isfinite(v.real) & np.isfinite(v.imag)))
                       | (np.uint8(not vz) << 1))
    return n_bad


@njit(inline="always")
def _copy_row(src, dst):
    # dst[:, :] = src by element (a slice assignment per row cost ~55 ns of fixed overhead: as much as
    # the row's bad values at 1 channel; and an array-to-slice assignment compiles numba's
    # shape-mismatch error message -- str/join: ~4.8 s of the cold start's CPU, issue 16)
    for chan in range(src.shape[0]):
        for c in range(src.shape[1]):
            dst[chan, c] = src[chan, c]


#: flag_bad_values' kernel takes the nested loops (:func:`_bad_row_2d`) on rows of fewer samples
#: (n_chan * n_corr): the flat pass's fixed cost per row made rows of 1-4 channels x 4 correlations
#: 1.5-4x slower (measured: 1 channel, 17664 rows, 0.44 ms nested against 1.87 ms flat).  Only there:
#: the solve's fused pass (:func:`_levels_and_ratios`) compiles the flat one alone (issue 16, cold
#: start), its narrow rows no slower overall (the flat ratios gain more than the bad values lose)
BAD_ROW_FLAT_MIN = 64


@njit(inline="always")
def _bad_row_2d(dr, mr, use_model, wr, fr, orow):
    # _bad_row with nested loops on (n_chan, n_corr) row views: the same flags and count
    n_chan, n_corr = dr.shape
    nb = 0
    for chan in range(n_chan):
        mbad = True                     # DATA exactly 0 in every correlation: a correlator dropout
        for c in range(n_corr):
            v = np.complex128(dr[chan, c])
            if v.real != 0 or v.imag != 0:
                mbad = False
                break
        if use_model and not mbad:
            allzero = True
            for c in range(n_corr):
                m = np.complex128(mr[chan, c])
                if not (np.isfinite(m.real) and np.isfinite(m.imag)):
                    mbad = True
                if m.real != 0 or m.imag != 0:
                    allzero = False
            mbad = mbad or allzero
        for c in range(n_corr):
            if fr[chan, c]:
                orow[chan, c] = True
                continue
            v = np.complex128(dr[chan, c])
            w = np.float64(wr[chan, c])
            if (mbad or not (np.isfinite(v.real) and np.isfinite(v.imag)) or (v.real == 0 and v.imag == 0)
                    or not np.isfinite(w) or w < 0):
                orow[chan, c] = True
                nb += 1
            else:
                orow[chan, c] = False       # every element written: ``out`` may be np.empty
    return nb


@njit
def _bad_values(start, stride, data, model, weight, flag, out, use_model, codes, words):
    # rows start, start + stride, ... (_numba.threaded; each row writes only out[row]); ``data``,
    # ``model`` C-contiguous (flat row views; narrow rows: the nested loops, BAD_ROW_FLAT_MIN);
    # ``codes``, ``words``: :func:`_bad_scratch`'s
    n_bad = 0
    if data.shape[1] * data.shape[2] < BAD_ROW_FLAT_MIN:
        for row in range(start, data.shape[0], stride):
            n_bad += _bad_row_2d(data[row], model[row] if use_model else model[0], use_model, weight[row],
                                 flag[row], out[row])
        return n_bad
    code = codes[start]
    d2 = flat_rows(data)
    m2 = flat_rows(model)
    for row in range(start, data.shape[0], stride):
        # row views (2-d indexing in the inner loops)
        n_bad += _bad_row(d2[row], m2[row] if use_model else m2[0], use_model, weight[row], flag[row],
                          out[row], code, words, row, start)
    return n_bad


@njit
def _bad_values_rows(start, stride, rows, data, model, weight, flag, out, prior, use_model, codes, words):
    # _bad_values of rows[start::stride] (_numba.threaded), each also copied to prior[row]
    code = codes[start]
    d2 = flat_rows(data)
    m2 = flat_rows(model)
    for i in range(start, len(rows), stride):
        row = rows[i]
        _bad_row(d2[row], m2[row] if use_model else m2[0], use_model, weight[row], flag[row], out[row], code,
                 words, row, start)
        _copy_row(out[row], prior[row])


def flag_bad_values(data, model, weight, flag):
    """``(flags, n_new)``: ``flag`` (not modified) plus the samples with non-finite DATA or weight,
    negative weight, or a non-finite or all-zero MODEL (module docstring); n_new counts the newly
    flagged samples."""
    if data.shape[0] == 0:
        return np.array(flag, bool, copy=True), 0
    # written whole by the kernel (no copy of ``flag`` first); its pages faulted in at once (prefault)
    out = prefault.populate_now(np.empty(data.shape, np.bool_))
    use_model = model is not None
    data = np.ascontiguousarray(data)           # (the kernels' flat row views; a copy only when strided)
    m = np.ascontiguousarray(model) if use_model else np.zeros((1, 1, 1), np.complex64)
    w = np.broadcast_to(weight, data.shape)
    f = np.ascontiguousarray(flag, bool)        # (C-contiguous: _bad_decide's word views)
    codes, words = _bad_scratch(f, out)
    n = sum(threaded(_bad_values, data.shape[0], data, m, w, f, out, use_model, codes, words))
    return out, int(n)


def _decide_row(use_model, wr, fr, orow, code, words, row, t, n_corr):
    """The bad values of one row in the bad values' kernels: :func:`_bad_decide` when ``words`` is
    None, else :func:`_bad_decide_words` on the caller's word views (:func:`_bad_word_views`; ``t``
    the thread's row of the codes).  Chosen by type when the kernel compiles (an ``is None`` test on
    an argument is not pruned by numba, so both paths compiled): only one path is compiled."""


@overload(_decide_row)
def _decide_row_impl(use_model, wr, fr, orow, code, words, row, t, n_corr):
    if isinstance(words, types.NoneType):
        def bytes_path(use_model, wr, fr, orow, code, words, row, t, n_corr):
            return _bad_decide(use_model, wr, fr, orow, code)
        return bytes_path

    def words_path(use_model, wr, fr, orow, code, words, row, t, n_corr):
        return _bad_decide_words(use_model, wr, words[0][row], words[1][row], words[2][t], n_corr)
    return words_path


#: :func:`_levels_and_ratios` writes buf this many rows at a time (64 bytes of float32)
BUF_TILE = 16


@njit
def _levels_and_ratios(start, step, data, model, out, rows, lo, hi, use_corr, use_model, level, buf, stride,
                       xkeep, keep_x, coh, fuse_bad, flag_in, weight, prior,
                       known, codes, words):
    # one row-parallel pass over the rows[lo:hi] of a group (each row writes its own level and its own
    # column of buf: race-free): level[row, k] = median of x over the row's unflagged channels, every
    # stride-th (NaN when too few), buf[k, chan, i] = x / level (float32; NaN: flagged or unusable), so
    # the per-channel statistics then read contiguous memory.  x of the whole row first, in float32
    # (rfi.flat_row_ratios: vectorised)
    # (thread ``start`` of ``step`` (_numba.threaded) takes one contiguous block of the group's rows:
    # interleaved rows would have both threads writing the same cache lines of buf, measured 2x slower)
    # ``keep_x``: the ratios of row rows[lo + i] are written to xkeep[i] (the per-row MAD then reads
    # them instead of computing them again, :func:`_persistent_into`)
    # ``fuse_bad``: out[row] is first made flag_in[row] plus the row's bad values (:func:`_bad_row`) and
    # copied to prior[row] -- flag_chunk's first stage in the same pass over the row (the row's data
    # is read once; the same flags)
    # ``data``, ``model`` C-contiguous: their flat row views (rfi.flat_rows) for the bad values and ratios
    # ``codes``, ``words``: :func:`_bad_scratch`'s -- the per-thread sample codes and the word views
    # made by the caller: the bad values then take the word path (:func:`_bad_decide_words`) of this
    # layout alone, and the kernel compiles no array view, nor the other layouts' paths
    # (:func:`_decide_row`, chosen by type; issue 16, cold start)
    n_chan, n_corr = data.shape[1], data.shape[2]
    d2 = flat_rows(data)
    m2 = flat_rows(model)
    x2 = flat_rows(xkeep)
    o2 = flat_rows(out)         # (``out``, ``prior``: C-contiguous, _persistent_into's)
    p2 = flat_rows(prior)
    scratch1 = np.empty(n_chan * n_corr, np.float32)
    scratch = scratch1.reshape(n_chan, n_corr)
    xs = np.empty(n_chan)
    code = codes[start]
    per = (hi - lo + step - 1) // step
    i_end = min((start + 1) * per, hi - lo)
    # the normalised ratios of BUF_TILE consecutive rows go to ``tile`` first, then to buf one run of
    # BUF_TILE rows (a cache line) per (hand, channel): a row's own column of buf touches a page per
    # channel (1024 channels x 3000 rows: this pass 8% faster)
    tile = np.empty((len(use_corr), n_chan, BUF_TILE), np.float32)
    for i in range(start * per, i_end):
        row = rows[lo + i]
        r = (i - start * per) % BUF_TILE        # (this thread's rows only)
        orow = out[row]
        d1 = d2[row]
        m1 = m2[row] if use_model else m2[0]
        if keep_x:
            xr = xkeep[i]
            x1 = x2[i]
        else:
            xr = scratch
            x1 = scratch1
        if fuse_bad:
            # the ratios and the bad values' sample codes in one loop over the row's data
            if _ratios_codes(d1, m1, use_model, x1, code):
                _row_ratios64(d1, m1, use_model, x1)
            _decide_row(use_model, weight[row], flag_in[row], orow, code, words, row, start, n_corr)
            o1 = o2[row]
            p1 = p2[row]
            for j in range(len(o1)):        # (flat: vectorised)
                p1[j] = o1[j]
        else:
            flat_row_ratios(d1, m1, use_model, x1)
        for k in range(len(use_corr)):
            c = use_corr[k]
            cnt = np.int64(0)     # not a literal 0: _median compiles once (int64), not twice
            for chan in range(0, n_chan, stride):          # the level from every stride-th channel
                xv = xr[chan, c]
                if not orow[chan, c] and np.isfinite(xv):
                    xs[cnt] = xv
                    cnt += 1
            med = _median(xs, cnt) if cnt >= MIN_CHANNELS else np.nan
            lv = np.float32(med)
            # the median of all the row's values (stride 1), for its per-row MAD (rfi._mad_flag_rows)
            known[i, k, 0] = med
            known[i, k, 1] = cnt if stride == 1 and cnt >= MIN_CHANNELS else -1
            level[row, k] = lv
            # 1a. the row's lag-one channel coherence of z = V conj(M): S = the sum of the unit phasors
            # of z_{c+1} conj(z_c), Q = their number, over the unflagged pairs (c, c + 1), c every
            # stride-th channel (at most ~MAX_STAT_SAMPLES pairs, as the level): coh[i, k] = Re S, Im S, Q
            sr = 0.0
            si = 0.0
            sq = 0.0
            dr = data[row]
            mr = model[row] if use_model else model[0]
            z1 = 0j
            for chan in range(0, n_chan - 1, stride):
                # z = V conj(M) in float64 (at stride 1 each channel's once: z1 of a pair is z0 of the next)
                if stride == 1 and chan > 0:
                    z0 = z1
                else:
                    z0 = np.complex128(dr[chan, c])
                    if use_model:
                        z0 = z0 * np.conj(np.complex128(mr[chan, c]))
                z1 = np.complex128(dr[chan + 1, c])
                if use_model:
                    z1 = z1 * np.conj(np.complex128(mr[chan + 1, c]))
                if orow[chan, c] or orow[chan + 1, c]:
                    continue
                # the unit phasor of z1 conj(z0) in float64: scale-free over float32's whole range
                p = z1 * np.conj(z0)
                pn = p.real * p.real + p.imag * p.imag      # |z0|^2 |z1|^2: one square root per pair
                if pn > 0 and pn < np.inf:                  # (float64 holds it up to |V||M| ~ 1e77)
                    inv = 1.0 / np.sqrt(pn)
                    sr += p.real * inv
                    si += p.imag * inv
                    sq += 1.0
            coh[i, k, 0] = sr
            coh[i, k, 1] = si
            coh[i, k, 2] = sq
            tk = tile[k]
            if lv > 0:
                for chan in range(n_chan):
                    xv = xr[chan, c]
                    tk[chan, r] = xv / lv if not orow[chan, c] and np.isfinite(xv) else np.nan
            else:
                for chan in range(n_chan):
                    tk[chan, r] = np.nan
        if r == BUF_TILE - 1 or i == i_end - 1:         # the tile's rows i - r .. i to buf
            for k in range(len(use_corr)):
                for chan in range(n_chan):
                    for q in range(r + 1):
                        buf[k, chan, i - r + q] = tile[k, chan, q]


@njit
def _bursts(out, level, seg_rows, seg_bounds, threshold, burst):
    # per segment (the rows of one baseline in one group, in time order): a row whose level exceeds
    # the segment's median level by more than BURST_REL of it and threshold robust sigmas is flagged
    n_chan, n_corr = out.shape[1], out.shape[2]
    n_k = level.shape[1]
    n_new = 0
    for g in range(len(seg_bounds) - 1):
        lo, hi = seg_bounds[g], seg_bounds[g + 1]
        n = hi - lo
        if n < 3:
            continue
        buf = np.empty(n)
        for k in range(n_k):
            cnt = np.int64(0)
            for i in range(lo, hi):
                v = level[seg_rows[i], k]
                if np.isfinite(v):
                    buf[cnt] = v
                    cnt += 1
            if cnt < 3:
                continue
            m = _median(buf, cnt)
            cnt2 = np.int64(0)
            for i in range(lo, hi):
                v = level[seg_rows[i], k]
                if np.isfinite(v):
                    buf[cnt2] = abs(v - m)
                    cnt2 += 1
            sd = MAD_TO_SIGMA * _median(buf, cnt2)
            for i in range(lo, hi):
                row = seg_rows[i]
                v = level[row, k]
                if np.isfinite(v) and v - m > max(threshold * sd, BURST_REL * abs(m)):
                    for chan in range(n_chan):
                        for c in range(n_corr):
                            out[row, chan, c] = True
                    burst[row] = True
                    n_new += 1
    return n_new


@njit
def _channel_medians(start, stride, buf, chans, med, isb, step):
    # m_c of 1b. for the channels chans[start::stride] (_numba.threaded; each writes only its own
    # med[ci]): the median of y over the group's non-burst rows (every step-th, as 1b.; ``isb`` per
    # column of ``buf``), NaN with fewer than MIN_ROWS -- the same values 1b. computes for those channels
    n_k, n_chan, n = buf.shape
    xs = np.empty(n)
    for ci in range(start, len(chans), stride):
        chan = chans[ci]
        for k in range(n_k):
            bkc = buf[k, chan]
            cnt = np.int64(0)
            for i in range(0, n, step):
                v = bkc[i]
                if np.isfinite(v) and not isb[i]:
                    xs[cnt] = v
                    cnt += 1
            med[ci, k] = _median(xs, cnt) if cnt >= MIN_ROWS else np.nan


@njit
def _baseline_devs(start, stride, buf, cols, sbl, chans, isburst, med, devs):
    # 1c. (channels chans[start::stride], _numba.threaded; each (segment, channel) writes only its own
    # slots): |y - m_c| of every non-burst row of each baseline segment (group positions
    # cols[sbl[s]:sbl[s + 1]]) in channel chans[ci], into devs[k, sbl[s] * n_sc + ci * len_s + j];
    # NaN where y or m_c is not finite or the row is a burst
    n_k = buf.shape[0]
    n_sc = len(chans)
    for ci in range(start, n_sc, stride):
        chan = chans[ci]
        for k in range(n_k):
            col = buf[k, chan]
            dk = devs[k]
            m = med[ci, k]
            for sg in range(len(sbl) - 1):
                a, b = sbl[sg], sbl[sg + 1]
                base = a * n_sc + ci * (b - a)
                for p in range(a, b):
                    c = cols[p]
                    dk[base + p - a] = np.nan if isburst[c] else abs(col[c] - m)


@njit
def _segment_scales(start, stride, devs, sbl, n_sc, scale, nsamp):
    # 1c. (segments start, start + stride, ...: _numba.threaded): scale[k, s] = median of the finite
    # deviations of segment s (NaN with fewer than MIN_SCALE_SAMPLES), nsamp[k, s] their count
    n_k = devs.shape[0]
    most = 0
    for sg in range(len(sbl) - 1):
        most = max(most, sbl[sg + 1] - sbl[sg])
    xs = np.empty(max(1, most * n_sc))
    for sg in range(start, len(sbl) - 1, stride):
        lo = sbl[sg] * n_sc
        hi = sbl[sg + 1] * n_sc
        for k in range(n_k):
            cnt = np.int64(0)
            for q in range(lo, hi):
                v = devs[k, q]
                if np.isfinite(v):
                    xs[cnt] = v
                    cnt += 1
            nsamp[k, sg] = cnt
            scale[k, sg] = _median(xs, cnt) if cnt >= MIN_SCALE_SAMPLES else np.nan


def _relative_scales(buf, cols, sbl, isb, step, seg_ants=None, live=None):
    """1c. of the module docstring: (n_k, n) float32, 1 / r_b of the baseline of each group position
    (the columns of ``buf``; 1 where r_b is not measured), from the group's baseline segments (positions
    ``cols[sbl[s]:sbl[s + 1]]``; ``isb`` the bursts (1.) per column; ``seg_ants`` (n_seg, 2) their
    antennas, default one antenna pair per segment), on every n_chan // SCALE_CHANNELS-th channel (their
    m_c computed here as 1b. does: 1b. then reads ``buf`` once)."""
    n_k, n_chan, n = buf.shape
    rel = np.ones((n_k, n), np.float32)
    n_seg = len(sbl) - 1
    if n_seg < 2:
        return rel
    chans = np.arange(0, n_chan, max(1, n_chan // SCALE_CHANNELS), dtype=np.int64)
    med = np.empty((len(chans), n_k))
    threaded(_channel_medians, len(chans), buf, chans, med, isb, step)
    devs = np.empty((n_k, n * len(chans)), np.float32)
    threaded(_baseline_devs, len(chans), buf, cols, sbl, chans, isb, med, devs)
    scale = np.full((n_k, n_seg), np.nan)
    nsamp = np.zeros((n_k, n_seg), np.int64)
    threaded(_segment_scales, n_seg, devs, sbl, np.int64(len(chans)), scale, nsamp)
    if seg_ants is None:
        seg_ants = np.column_stack([np.zeros(n_seg, np.int64), np.arange(1, n_seg + 1)])
    _, pq = np.unique(np.asarray(seg_ants), return_inverse=True)
    pq = pq.reshape(n_seg, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(n_k):
            ok = np.isfinite(scale[k]) & (scale[k] > 0)
            if not ok.any():
                continue
            ls = np.where(ok, np.log(scale[k]), 0.0)
            fit, fitted = _antenna_fit(ls, ok, pq[:, 0], pq[:, 1])
            # the baseline's own scale, at most EXCESS_MAX times its antennas' (docstring)
            ls = np.where(fitted, np.minimum(ls, fit + np.log(EXCESS_MAX)), ls)
            lr = np.where(ok, ls - np.median(ls[ok]), 0.0)
            v = 2.0 / np.maximum(nsamp[k], 1)
            lr = np.where(lr * lr > v, lr - v / np.where(lr == 0, 1.0, lr), 0.0)   # shrunk (docstring)
            if live is not None:        # own scale only where the baseline shows the source (1a.)
                lr = np.where(live[k], lr, 0.0)
            rel[k, cols] = np.repeat(np.exp(-lr).astype(np.float32), np.diff(sbl))
    return rel


#: 1a. (no signal): a (baseline, block, hand) or a row is signal-free when its coherence statistic
#: t = |S|^2 / Q is below this (pure noise: t ~ Exp(1), P(t > 16) = 1e-7) ...
DEAD_T = 16.0
#: ... while a baseline of the block has t of at least this (the source is seen at 10 sigma: noise
#: never gets there, P = e^-100; the best baseline, not the typical one, as most baselines of a small
#: array with two dead antennas are dead; a fully coherent baseline has t = its number of channel
#: pairs, so a block of 4 integrations x 64 channels still reaches it) ...
STRONG_SEG_T = 100.0
#: ... or, for one row, its t / Q is below ROW_REL times a reference: the median row's t / Q of its
#: baseline in the block when that is >= ROW_REF_FRAC and the baseline's t >= LIVE_T, or the best row's
#: when its t >= min(STRONG_ROW_T, max(DEAD_T, ROW_REF_BEST Q)) (a row's t is at most its Q channel
#: pairs: 100 alone needs 101 channels; the best of the rows of a weak baseline at a moderate SNR
#: reaches 0.6 Q at 32 channels, and then flagged 0.15% of clean rows)
STRONG_ROW_T = 100.0
ROW_REF_FRAC = 0.6
ROW_REF_BEST = 0.8
ROW_REL = 0.2
#: a baseline is judged against its own scatter (1c.) only when its t is at least this (6 sigma) and
#: no row's t / Q is below ROW_REL times the median row's: one that barely shows the source, or whose
#: rows differ (an antenna dying within the block), keeps the group's common scatter
LIVE_T = 36.0
#: a baseline of an antenna without a live baseline in the block (a weak antenna: noisier, or dead) is
#: signal-free only when that antenna's first-order test finds no signal at this false-alarm
#: probability (:func:`_first_order_p`; a false alarm lets a dead antenna's block through to 1b.)
FIRST_ORDER_P = 1e-7


@njit
def _no_signal_rows(coh, cols, sbl, dead, live, t_seg):
    # 1a. per hand k and baseline segment s (group positions cols[sbl[s]:sbl[s + 1]]): t_seg[k, s] (NaN
    # without pairs), live[k, s], and dead[pos, k] for the rows without signal in a baseline whose best
    # row sees the source (module docstring)
    n_k = coh.shape[1]
    most = 1
    for s in range(len(sbl) - 1):
        most = max(most, sbl[s + 1] - sbl[s])
    rq = np.empty(most)
    for k in range(n_k):
        for s in range(len(sbl) - 1):
            a, b = sbl[s], sbl[s + 1]
            sr = 0.0
            si = 0.0
            sq = 0.0
            n_fin = np.int64(0)
            best_t = -1.0
            best_q = 1.0
            for p in range(a, b):
                c = cols[p]
                q = coh[c, k, 2]
                if q > 0:
                    sr += coh[c, k, 0]
                    si += coh[c, k, 1]
                    sq += q
                    t = (coh[c, k, 0] ** 2 + coh[c, k, 1] ** 2) / q
                    rq[n_fin] = t / q
                    n_fin += 1
                    if t > best_t:
                        best_t = t
                        best_q = q
            if sq == 0:
                t_seg[k, s] = np.nan
                continue
            ts = (sr * sr + si * si) / sq
            t_seg[k, s] = ts
            ref = 0.0                   # the t / Q of a row that sees the source (0: none)
            if ts >= LIVE_T:
                med = _median(rq, n_fin)
                lim = ROW_REL * med
                alike = True
                for p in range(a, b):
                    c = cols[p]
                    q = coh[c, k, 2]
                    if q > 0 and (coh[c, k, 0] ** 2 + coh[c, k, 1] ** 2) / (q * q) < lim:
                        alike = False
                live[k, s] = alike
                if med >= ROW_REF_FRAC:         # most rows coherent (rows of <= 16 channels: t <= 15)
                    ref = med
            if best_t >= min(STRONG_ROW_T, max(DEAD_T, ROW_REF_BEST * best_q)):
                ref = max(ref, best_t / best_q)
            if n_fin >= MIN_ROWS and ref > 0:
                lim = ROW_REL * ref
                for p in range(a, b):
                    c = cols[p]
                    q = coh[c, k, 2]
                    if q > 0:
                        t = (coh[c, k, 0] ** 2 + coh[c, k, 1] ** 2) / q
                        if t < DEAD_T and t / q < lim:
                            dead[c, k] = True


def _no_signal(coh, cols, sbl, seg_ants=None, first_order=None, levels=None):
    """1a. of the module docstring: ((n, n_k) bool dead per group position and hand, (n_k, n_seg) bool
    live per baseline segment and hand) from the rows' coherence sums ``coh`` (n, n_k, 3: Re S, Im S,
    Q; t = |S|^2 / Q) and the segments (positions ``cols[sbl[s]:sbl[s + 1]]``).  With ``seg_ants``
    (n_seg, 2) and ``first_order(k, segs)`` (the p-values of those segments' first-order test in hand
    k, :func:`_first_order_p`), a signal-free baseline of a weak antenna is dead only when that
    antenna's first-order test finds nothing; without them the coherence alone decides.  ``levels``
    (an :class:`_AntennaLevels` of the chunk, given its block): the block's antenna sums are added to
    it (the rows dead here excluded)."""
    n, n_k = coh.shape[:2]
    n_seg = len(sbl) - 1
    dead = np.zeros((n, n_k), np.bool_)
    live = np.zeros((n_k, max(n_seg, 0)), np.bool_)
    if n_seg < 1:
        return dead, live
    t_seg = np.empty((n_k, n_seg))
    _no_signal_rows(coh, cols, sbl, dead, live, t_seg)
    seg_of = np.repeat(np.arange(n_seg), np.diff(sbl))
    fin = coh[cols, :, 2] > 0                           # (positions in segment order, n_k)
    ok = np.isfinite(t_seg)
    with np.errstate(invalid="ignore"):
        strong = np.where(ok, t_seg, -1.0).max(axis=1) >= STRONG_SEG_T
        cand = ok & (t_seg < DEAD_T) & strong[:, None]      # (n_k, n_seg): no signal by the coherence
        tlive = ok & (t_seg >= LIVE_T)
    for k in np.flatnonzero(cand.any(axis=1)):
        dead_seg = cand[k]
        if seg_ants is not None and first_order is not None:
            dead_seg = _weak_antennas(cand[k], ok[k], tlive[k], np.asarray(seg_ants), partial(first_order, k),
                                      aligned=True)
        dead[cols, k] |= dead_seg[seg_of] & fin[:, k]
    if levels is not None:              # 1a. pooled per antenna, across the blocks (_AntennaLevels)
        levels.add(t_seg, ok, coh, dead)
    return dead, live


#: 1a. pooled per antenna across the blocks (:class:`_AntennaLevels`): an antenna's excess coherence per
#: channel pair in a block carries no signal when it is within this many of its noise sigmas of 0 ...
QUIET_NOISE_SIGMAS = 3.0
#: ... and at least QUIET_SIGMAS noise sigmas below 1 / QUIET_REL of the antenna's typical level (at a
#: low SNR the excess goes as SNR^4: 1/16 is half the SNR, so a block of a live antenna at half its
#: typical SNR is kept at 4 sigma)
QUIET_REL = 16.0
QUIET_SIGMAS = 4.0
#: ... while the block's other antennas show, in the median, at least this fraction of their typical
#: excess (~0.85 of their SNR; a live antenna next to a dead one loses 1 baseline of its n - 1: 5/6 at 7
#: antennas; at 0.25, a weak antenna on a calibrator with RFI in half the blocks was still flagged: its
#: neighbours sat at ~0.3 of their RFI-set levels): a block where every antenna is weaker than
#: typical -- interference or an offset that raised the median level in half the blocks or more, a
#: big dish whose baselines carried the others' coherence flagged in some scans, weather -- is not one
#: dead antenna
BLOCK_TYPICAL = 0.5


class _AntennaLevels:
    """1a. pooled per antenna across the blocks of one chunk.  Where no single baseline reaches
    STRONG_SEG_T -- a block of one integration at <= 100 channels, of 8 channels -- the per-baseline
    test never fires, and a dead antenna's samples reached the solve (a solution interval over scans
    of one integration with an antenna dead in half of them: its gain 0.54 of the truth, unflagged;
    tests/test_antenna_levels.py).  Its baselines together still tell: per block and hand, T_a = the
    sum of t over antenna a's m_a baselines with channel pairs (noise: Gamma(m_a, 1)), Q_a their pairs
    (rows x pairs), e_a = (T_a - m_a) / Q_a its excess per pair (~rho^2 of the lag-one coherence) and
    s_a = sqrt(m_a) / Q_a the noise sigma of e_a (measured, 7 antennas, 1 integration x 64 channels at
    SNR 5: e ~ 0.75 = 115 s for a live antenna, 0 +- s for a dead one).  The antenna's *typical level*
    E is the higher median of its e_a over the chunk's blocks (robust: RFI or a correlator offset in a
    minority of the blocks, which raise e, do not set it; an antenna dead in up to half of them still
    has its live value).  In a block with

        e_a <= QUIET_NOISE_SIGMAS s_a   and   e_a <= E / QUIET_REL - QUIET_SIGMAS s_a

    (no signal, and a live antenna at half its typical SNR would show 4 sigma more) and the other
    antennas of the block near their own typical levels (the median of their e / E at least
    BLOCK_TYPICAL: a dead antenna is one antenna; with the median level alone, interference in half the
    blocks or more -- a 2-scan calibrator with one scan of broadband RFI -- set every antenna's level and
    flagged the clean scans, 20-61% of their samples, and a heterogeneous array's small dishes lost the
    scans where the big dish was flagged: session 35's second review), the antenna carries no signal
    unless Fisher's combination of its baselines' first-order tests finds some
    (:func:`_weak_antennas`' test); its baselines' rows are then flagged as 1a.'s (that hand and the
    cross hands) at the end of the chunk.  Both need E >= QUIET_REL (QUIET_NOISE_SIGMAS ...): the
    typical block shows the antenna at ~80 s of the quiet block's noise -- ~200 channel pairs over its
    baselines at a high SNR (6 baselines x 63 pairs of one 64-channel integration; not 6 x 15 of a
    16-channel one, whose dead blocks stay unflagged).

    Relative to the antenna's own typical level, never to other antennas: an antenna weaker than the
    rest (a lower gain, a warmer receiver: 3x the noise) is weak in every block; across antennas, gain
    amplitudes of 0.6-1.4 made live antennas look dead (5-25% of live samples flagged on clean chunks
    of 12-27 antennas at SNR 0.5-1), and with the level the best block's (the maximum) instead of the
    median, one block of broadband RFI on a weak calibrator flagged 25-68% of the clean scans, and
    an antenna at 0.6 of its SNR in half of 24 scans lost a block in 4 of 40 chunks (session 35's
    review).  Limits: a live block of one antenna at well under half its typical SNR can be flagged
    (measured: at 0.35-0.40 of it, 1-6 of 30 chunks lost some samples where the typical level sits
    near the detection limit, E ~ 80 s; at 0.3, 19 of 140); dead blocks fail the 3 sigma cut by
    chance (~1% of dead block-hands: Gamma's tail); the decision needs the typical blocks in the same
    chunk -- tier 1 reads a (field, SPW) whole, tiers 2/3 a group's blocks in reads of at most
    ``max_rows`` rows, so there a dead block read without live ones is left to the per-block tests and
    the flags can depend on the memory tier; an antenna dead in more than half of the chunk's blocks,
    or a weak calibrator (per-sample SNR ~0.5 at 64 channels x 8 integrations), is not seen."""

    def __init__(self):
        self.values = {}            # (antenna, hand) -> [e of each block]
        self.pending = []           # (block, hand, antenna, e, s, segments) of blocks without signal
        self.block = None

    def begin(self, rows, cols, sbl, seg_ants, first_order):
        """The next block: its rows (group positions -> chunk rows), segments and ``first_order(k,
        segs)`` (:func:`_first_order_p` of its segments in hand k)."""
        self.block = (rows, cols, sbl, np.asarray(seg_ants), first_order)

    def add(self, t_seg, ok, coh, dead):
        """The block's antenna sums per hand from its segments' t (n_k, n_seg), ``ok`` and the rows'
        ``coh``; segments with a row 1a. found dead are left out."""
        rows, cols, sbl, seg_ants, _ = self.block
        n_k, n_seg = t_seg.shape
        if n_seg == 0:
            return
        p, q = seg_ants[:, 0], seg_ants[:, 1]
        n_a = int(seg_ants.max()) + 1
        starts = sbl[:-1]
        for k in range(n_k):
            q_seg = np.add.reduceat(coh[cols, k, 2], starts)
            seg_dead = np.add.reduceat(dead[cols, k].astype(np.int64), starts) > 0
            use = ok[k] & ~seg_dead & (q_seg > 0)
            t = np.where(use, t_seg[k], 0.0)
            qq = np.where(use, q_seg, 0.0)
            tot = np.bincount(p, t, n_a) + np.bincount(q, t, n_a)
            m = np.bincount(p, use, n_a) + np.bincount(q, use, n_a)
            pairs = np.maximum(np.bincount(p, qq, n_a) + np.bincount(q, qq, n_a), 1.0)
            e = (tot - m) / pairs
            sig = np.sqrt(m) / pairs
            ants = np.flatnonzero(m >= 1)
            others = (ants, e[ants])            # every antenna's e in this block and hand
            for a in ants:
                self.values.setdefault((a, k), []).append(e[a])
                if e[a] <= QUIET_NOISE_SIGMAS * sig[a]:
                    segs = np.flatnonzero(use & ((p == a) | (q == a)))
                    self.pending.append((self.block, k, a, e[a], sig[a], segs, others))

    def level(self, a, k):
        """The antenna's typical level E in hand k: the higher median of its blocks' e."""
        v = np.sort(self.values.get((a, k), [0.0]))
        return float(v[len(v) // 2])

    @staticmethod
    def _others_typical(a, k, ants, e_all, levels):
        """The block's other antennas (hand k) are near their typical levels (``levels``: (antenna,
        hand) -> E): the median of their e / E is at least BLOCK_TYPICAL (with no other antenna with a
        level: False)."""
        r = [e_b / lev for b, e_b in zip(ants, e_all) if b != a for lev in (levels[(b, k)],) if lev > 0]
        return len(r) > 0 and float(np.median(r)) >= BLOCK_TYPICAL

    def dead_rows(self):
        """[(hand, chunk rows)] of the antennas without signal in a block (class docstring)."""
        from scipy.special import gammaincc

        out = []
        levels = {key: self.level(*key) for key in self.values} if self.pending else {}   # each once
        for (rows, cols, sbl, _, first_order), k, a, e, sig, segs, (ants, e_all) in self.pending:
            if e > levels[(a, k)] / QUIET_REL - QUIET_SIGMAS * sig:
                continue
            if not self._others_typical(a, k, ants, e_all, levels):
                continue                                # the whole block is weaker: not one dead antenna
            x = -np.log(np.maximum(first_order(k, segs), 1e-300)).sum()      # (-2 sum ln p) / 2
            if gammaincc(len(segs), x) < FIRST_ORDER_P:
                continue                                # its first-order test vouches for it
            out.append((k, rows[np.concatenate([cols[sbl[s]:sbl[s + 1]] for s in segs])]))
        return out


def _weak_antennas(cand, ok, tlive, seg_ants, first_order, aligned=False):
    """1a.: of the signal-free baselines ``cand`` (n_seg,) of one hand (by the coherence), those still
    dead after the first-order test (p-values from ``first_order(segs)``, :func:`_first_order_p`): a
    baseline is kept when its own test finds signal at FIRST_ORDER_P, or when no antenna of it is a
    quiet weak antenna and one is a weak antenna with signal.  A weak antenna has no baseline with
    t >= LIVE_T in the block; it shows signal when Fisher's combination -2 sum ln p over all its
    baselines (chi^2 with 2 m degrees of freedom) exceeds the FIRST_ORDER_P level, else it is quiet.  So
    a dead correlator baseline between two live antennas stays dead, and so does every baseline of a
    dead antenna (any noise level: the test is scale-free) or of a dead feed; a live antenna much
    noisier than the others keeps the baselines that its combined first-order signal vouches for.
    With ``aligned`` (``first_order(segs, spectra=...)`` then also gives the segments' delay spectra), a
    weak antenna without signal by Fisher's combination (but below ALIGNED_FISHER_P) is tested once more
    with its baselines' delays aligned (:func:`_aligned_signal`)."""
    from scipy.special import gammaincc

    n_a = int(seg_ants.max()) + 1
    p, q = seg_ants[:, 0], seg_ants[:, 1]
    weak = np.ones(n_a, bool)
    weak[p[tlive]] = False
    weak[q[tlive]] = False
    wa = np.union1d(p[cand][weak[p[cand]]], q[cand][weak[q[cand]]])      # the weak antennas to test
    segs = np.flatnonzero(ok & (cand | np.isin(p, wa) | np.isin(q, wa)))
    lp = np.zeros(len(p))
    spectra = {} if aligned else None
    lp[segs] = np.log(np.maximum(first_order(segs) if spectra is None else first_order(segs, spectra=spectra),
                                 1e-300))
    m = np.bincount(p[segs], minlength=n_a) + np.bincount(q[segs], minlength=n_a)
    x = -(np.bincount(p, lp, n_a) + np.bincount(q, lp, n_a))            # (-2 sum ln p) / 2
    signal = np.zeros(n_a, bool)
    signal[wa] = gammaincc(np.maximum(m[wa], 1), x[wa]) < FIRST_ORDER_P
    if aligned:     # the delays aligned across its baselines (_aligned_signal), where Fisher hints
        hint = np.zeros(n_a, bool)
        hint[wa] = gammaincc(np.maximum(m[wa], 1), x[wa]) < ALIGNED_FISHER_P
        for a in wa[~signal[wa] & hint[wa]]:
            sa = segs[(p[segs] == a) | (q[segs] == a)]
            signal[a] = _aligned_signal(a, sa, p, q, tlive, first_order, spectra)
    quiet, vouched = weak & ~signal, weak & signal
    kept = (lp < np.log(FIRST_ORDER_P)) | (~quiet[p] & ~quiet[q] & (vouched[p] | vouched[q]))
    return cand & ~kept


#: the aligned test (:func:`_aligned_signal`) runs for a weak antenna whose Fisher combination is below
#: this (a hint of signal; a cost bound: a dead antenna's blocks run it ~1 in 10 times, each one FFT
#: per partner; the live antennas it kept in the measured chunks, 49 blocks, all had Fisher p < 0.05)
ALIGNED_FISHER_P = 0.1


def _aligned_signal(a, sa, p, q, tlive, first_order, spectra):
    """1a.: antenna a's first-order signal with its baselines' delays aligned.  A baseline's delay is
    its antennas' difference, tau_ab = tau_a - tau_b = tau_a,b0 + tau_b0,b: with the delays tau_b0,b of
    the live baselines (``tlive``) between a reference partner b0 and the others, one delay x =
    tau_a,b0 is left, and G(x) = sum_b F_ab(x + tau_b0,b) over a's baselines ``sa`` (the delay spectra
    F of :func:`_first_order_p`, in ``spectra``: segment -> (F, R)) is Gamma(sum R, 1) for noise at
    every x; signal when min(1, N Q(sum R, max G)) < FIRST_ORDER_P (N alignments tried, below).
    tau_b0,b from the peak of the live baseline's delay spectrum (``first_order(segs, spectra=...)``,
    :func:`_first_order_p`: one FFT per partner), interpolated between bins by the parabola through
    the peak and its neighbours (the lag-one phase step of its coherence sum S, which costs no FFT, is
    too coarse at many channels: at 256 channels x 4 integrations and SNR 1, ~4 bins off, and the
    noisy antenna lost blocks it kept with the peaks).  Per baseline the search over L
    delays costs as much as the signal of one baseline brings (Bonferroni over each baseline's delays,
    then Fisher); aligned, the antenna's baselines add up: a live antenna 10x noisier than the others
    at a per-sample SNR of 2 (0.2 on its baselines) over 64 channels x 8-10 integrations, seen per
    baseline in about half of the blocks, is seen in all of them but where a hand's gain is low
    (module docstring, limits).  b0 is the partner
    with the most live baselines to the others (the lowest antenna of those); partners without one to
    b0 are left out (their delay is not known); no live pair of partners: False.  x is searched over
    every distinct alignment of the baselines' delay bins (each baseline's delay x + tau_b0,b rounded
    to a bin of the zero-padded spectrum: at most m L alignments, the Bonferroni factor; searching
    whole bins of x only, the rounding lost a block whose true alignment gave p = 1e-9): noise is
    Gamma at every alignment, the test's false-alarm rate at most FIRST_ORDER_P."""
    from scipy.special import gammaincc

    partners = np.where(p[sa] == a, q[sa], p[sa])
    n_a = int(max(p.max(), q.max())) + 1
    seg = np.full((n_a, n_a), -1, np.int64)         # the live segment of each antenna pair
    lv = np.flatnonzero(tlive)
    seg[p[lv], q[lv]] = lv
    seg[q[lv], p[lv]] = lv
    n_live = (seg[np.ix_(partners, partners)] >= 0).sum(axis=1)
    j = int(np.argmax(n_live))
    if n_live[j] == 0:
        return False
    b0 = partners[j]
    L = len(spectra[sa[0]][0])
    need = [int(seg[b0, b]) for b in partners if b != b0 and seg[b0, b] >= 0 and seg[b0, b] not in spectra]
    if need:
        first_order(np.array(need, np.int64), spectra=spectra)
    use, offs = [], []
    for s, b in zip(sa, partners):
        if spectra[s][1] <= 0:
            continue
        if b == b0:
            off = 0.0
        elif seg[b0, b] < 0:
            continue
        else:       # V_b0,b's delay (the segment holds V_lo,hi; V_hi,lo's is the negative)
            fb = spectra[seg[b0, b]][0]
            i = int(np.argmax(fb))
            lo, mid, hi = fb[i - 1], fb[i], fb[(i + 1) % L]
            den = lo - 2 * mid + hi
            d = 0.5 * (lo - hi) / den if den < 0 else 0.0          # the parabola's vertex, |d| <= 1/2
            off = (i + d) if b0 < b else -(i + d)
        use.append(s)
        offs.append(off)
    if not use:
        return False
    k = np.arange(L)
    # F[b, j]: the power of V_ab at delay bin j (a segment V_ba's spectrum reversed)
    f = np.array([spectra[s][0] if p[s] == a else spectra[s][0][-k % L] for s in use])
    n = float(sum(spectra[s][1] for s in use))
    offs = np.array(offs)
    # every distinct alignment: baseline b's bin rint(x + off_b) steps up by one where x crosses
    # 1/2 - off_b (mod 1); from x between the first two such points, G(x + whole bins) for each
    # interval in turn, one baseline's term changed at each crossing
    cut = np.mod(0.5 - offs, 1.0)
    order = np.argsort(cut, kind="stable")
    cuts = np.unique(cut)                   # sorted
    # bin of b at x in (cuts[0], cuts[1]): floor(x + off_b + 1/2) = 1 - floor(1/2 - off_b) + floor(x -
    # cut_b), from the cuts themselves (no rounding of x + off_b at a tie)
    r = (1 - np.floor(0.5 - offs)).astype(np.int64) - (cut != cuts[0])
    rows = np.arange(len(use))[:, None]
    at = f[rows, (k[None, :] + r[:, None]) % L]
    g = at.sum(axis=0)
    best = g.max()
    rest = order[cut[order] != cuts[0]]     # (the first point is crossed last: the start, one bin on)
    if len(rest):               # each baseline's change at its point, summed in the points' order
        step = np.cumsum(f[rows, (k[None, :] + r[:, None] + 1) % L][rest] - at[rest], axis=0)
        ends = np.searchsorted(cut[rest], cuts[1:], side="right") - 1      # after each point
        best = max(best, (g[None, :] + step[ends]).max())
    return bool(min(1.0, len(cuts) * L * gammaincc(n, best)) < FIRST_ORDER_P)


#: first-order test: rows with fewer usable channels count for nothing; at most this many complex
#: elements of the delay spectra at a time
FIRST_ORDER_MIN_CHANNELS = 4
FIRST_ORDER_BATCH = 1 << 22


def _first_order_p(data, model, use_model, flag, rows, cols, sbl, segs, c, spectra=None):
    """1a.: per baseline segment ``segs`` (rows ``rows[cols[sbl[s]:sbl[s + 1]]]``) of correlation ``c``,
    the p-value of its first-order signal: the delay spectrum of the unit phasors u of z = V conj(M)
    over the row's unflagged channels (zero-padded FFT to L >= 2 n_chan), P_r(tau) = |FFT u|^2 / n_r
    (noise: Exp(1) in each delay), F(tau) = sum over the segment's R rows (Gamma(R, 1) for noise),
    p = min(1, L Q(R, max F)) (Bonferroni over the delays: conservative; Q the regularised upper
    incomplete gamma).  Scale-free (a dead antenna noisier than the array looks the same) and coherent
    across channels (a per-sample SNR s over n channels: F ~ R (1 + 0.785 n s^2) against the lag-one
    coherence's ~ R n s^4).  ``spectra``: a dict that receives each segment's (F, R) by segment."""
    from scipy.special import gammaincc

    sets = [rows[cols[sbl[s]:sbl[s + 1]]] for s in segs]
    f, nr = _delay_spectra(data, model, use_model, flag, sets, c)
    if spectra is not None:
        for i, s in enumerate(segs):
            spectra[s] = (f[i], nr[i])
    L = f.shape[1]
    with np.errstate(invalid="ignore"):
        return np.where(nr > 0, np.minimum(1.0, L * gammaincc(np.maximum(nr, 1), f.max(axis=1))), 1.0)


def _delay_spectra(data, model, use_model, flag, sets, c):
    """(F (n_set, L), R (n_set,)): :func:`_first_order_p`'s delay spectra of correlation ``c`` summed
    over each row set of ``sets`` (chunk rows) and the number of rows with a spectrum, in batches of at
    most FIRST_ORDER_BATCH elements (whole sets)."""
    n_chan = data.shape[1]
    L = 1 << int(np.ceil(np.log2(max(2 * n_chan, 2))))
    lens = np.array([len(r) for r in sets], np.int64)
    f_all = np.zeros((len(sets), L))
    nr_all = np.zeros(len(sets))
    i = 0
    while i < len(sets):
        j = i + 1
        while j < len(sets) and lens[i:j + 1].sum() * L <= FIRST_ORDER_BATCH:
            j += 1
        r = np.concatenate(sets[i:j])
        z = data[r, :, c].astype(np.complex128)
        if use_model:
            z *= np.conj(model[r, :, c])
        az = np.abs(z)
        use = ~flag[r, :, c] & np.isfinite(az) & (az > 0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):   # non-finite z: not used
            u = np.where(use, z / np.where(use, az, 1.0), 0.0)
        n_r = use.sum(axis=1)
        good = n_r >= FIRST_ORDER_MIN_CHANNELS
        pw = np.abs(np.fft.fft(u, n=L, axis=1)) ** 2 / np.maximum(n_r, 1)[:, None]
        pw[~good] = 0.0
        starts = np.concatenate([[0], np.cumsum(lens[i:j])[:-1]])
        f_all[i:j] = np.add.reduceat(pw, starts, axis=0)
        nr_all[i:j] = np.add.reduceat(good.astype(float), starts)
        i = j
    return f_all, nr_all


def _first_order_block(data, model, use_model, flag, rows, cols, sbl, use_corr, k, segs, spectra=None):
    """:func:`_first_order_p` of one block's segments ``segs`` in hand k (bound per block)."""
    return _first_order_p(data, model, use_model, flag, rows, cols, sbl, segs, use_corr[k], spectra)


def _flag_no_signal(out, prior, buf, rows, dead, use_corr, n_corr, level=None):
    """1a.: a row (group position i) without signal in a parallel hand: that hand's correlation and the
    cross hands are flagged in every channel, in ``out`` and in ``prior`` (the other hand is kept: a
    dead feed of one antenna; the extension treats them as flags of the MS), and the hand's ratios and
    level leave the statistics (``buf``, ``level`` NaN: the live rows of an antenna dying within the
    block are not bursts over the dead rows' level)."""
    for k in np.flatnonzero(dead.any(axis=0)):
        pos = np.flatnonzero(dead[:, k])
        r = rows[pos]
        for a in (out, prior):
            a[r, :, use_corr[k]] = True
            if n_corr == 4:
                a[r, :, 1:3] = True
        buf[k][:, pos] = np.nan
        if level is not None:
            level[r, k] = np.nan


#: 1c.'s antenna model: the baselines left out of the second fit (residual beyond this many robust
#: sigmas: RFI in much of the baseline's samples)
FIT_CLIP = 3.0
#: a baseline's own scale counts up to this many times its antennas' model (more: RFI in much of it)
EXCESS_MAX = 1.5


def _antenna_fit(ls, ok, p, q):
    """1c.: least squares ``ls[s] ~ u[p[s]] + u[q[s]]`` over the segments ``ok`` (p != q; the normal
    equations, n_ant x n_ant, with a ridge of 1e-9 of their largest diagonal: u = 0 for an antenna
    without baselines, and where the array leaves a combination free (two groups of antennas with
    baselines only between them) the least-norm one, which changes no u_p + u_q of a fitted
    baseline), then again without the baselines whose residual exceeds FIT_CLIP robust sigmas.
    Returns (u[p] + u[q] per segment, where both antennas had baselines in the fit)."""
    n_a = int(max(p.max(), q.max())) + 1
    w = ok.astype(float)
    pair = p * n_a + q
    for rnd in range(2):
        b = np.bincount(pair, w, n_a * n_a).reshape(n_a, n_a)
        m = b + b.T
        cnt = m.sum(axis=1)
        m[np.diag_indices(n_a)] += cnt
        rhs = np.bincount(p, w * ls, n_a) + np.bincount(q, w * ls, n_a)
        m[np.diag_indices(n_a)] += 1e-9 * max(cnt.max(), 1.0)      # (a tiny ridge: see the docstring)
        u = np.linalg.solve(m, rhs)
        if rnd == 0:
            e = np.abs(ls - u[p] - u[q])
            mad = MAD_TO_SIGMA * np.median(e[ok])
            if mad > 0:
                w = (ok & (e <= FIT_CLIP * mad)).astype(float)
    has = cnt > 0
    return u[p] + u[q], has[p] & has[q]


@njit
def _time_direction(start, stride, buf, out, rows, lo, threshold, med, sig, nuse, isb, step, rel):
    # 1b. per channel (parallel): median m_c of y across the group's rows and sigma_c = 1.4826 MAD of
    # |y - m_c| times ``rel`` = 1 / r_b of the row's baseline (1c.), per parallel hand; per-sample
    # outliers flagged in every correlation (each channel writes only its own column of ``out``:
    # race-free)
    n_k, n_chan, n = buf.shape
    # (channels start, start + stride, ... on this thread: _numba.threaded)
    xs = np.empty(n)
    ys = np.empty(n)
    ws = np.empty(n, np.float32)
    for chan in range(start, n_chan, stride):
        for k in range(n_k):
            bkc = buf[k, chan]                      # contiguous over the group's rows
            rk = rel[k]
            cnt = np.int64(0)
            for i in range(0, n, step):             # the statistics from every step-th row
                v = bkc[i]
                if np.isfinite(v) and not isb[i]:
                    xs[cnt] = v
                    ys[cnt] = v
                    ws[cnt] = rk[i]
                    cnt += 1
            nuse[chan, k] = cnt
            if cnt < MIN_ROWS:
                continue
            m = _median(xs, cnt)                    # (reorders xs; ys, ws keep the row order)
            for q in range(cnt):
                xs[q] = abs(ys[q] - m) * ws[q]
            s = MAD_TO_SIGMA * _median(xs, cnt)
            med[chan, k] = m
            sig[chan, k] = s
            lim = threshold * s
            floor = MIN_REL_DEV * abs(m)
            for i in range(n):
                v = bkc[i]
                d = abs(v - m)                      # NaN (flagged) compares False
                # the rarely true test first (a branch the predictor gets right; d > floor holds for a
                # few % of the samples where the 20% floor is ~2 sigma)
                if d * rk[i] > lim and d > floor and np.isfinite(v) and not isb[i]:
                    out[rows[lo + i], chan, :] = True


@njit
def _running_median(v, ok, chan, buf):
    nb = np.int64(0)
    for j in range(max(0, chan - HALF_WINDOW), min(len(v), chan + HALF_WINDOW + 1)):
        if ok[j]:
            buf[nb] = v[j]
            nb += 1
    return _median(buf, nb)


@njit(inline="always")
def _row_available_and_new(fr, pr, chan, use_corr):
    """(available, newly flagged) of one channel of a row over the correlations ``use_corr``: available
    = not flagged before the RFI stages (``pr = prior[row]``) in some of them; new = flagged now
    (``fr = out[row]``) in one of those.  Row views: 2-d indexing in the inner loops measured 6x faster
    than 3-d indexing in a serial kernel."""
    avail = False
    new = False
    for k in range(len(use_corr)):
        c = use_corr[k]
        if not pr[chan, c]:
            avail = True
            if fr[chan, c]:
                new = True
    return avail, new


@njit
def _bad_channels(n_chan, use_corr, threshold, med, sig, nuse):
    # the persistent channels of one group (n_chan,) bool, from its per-channel statistics
    bad_chan = np.zeros(n_chan, np.bool_)
    # 2. persistent channels, per parallel hand: deviation from the running median of the neighbours
    d = np.empty(n_chan)
    ref = np.empty(n_chan)
    buf = np.empty(2 * HALF_WINDOW + 1)
    ds = np.empty(n_chan)
    ok = np.zeros(n_chan, np.bool_)
    for k in range(len(use_corr)):
        n_ok = 0
        for chan in range(n_chan):
            ok[chan] = nuse[chan, k] >= 4 and np.isfinite(med[chan, k]) and np.isfinite(sig[chan, k])
            n_ok += ok[chan]
        if n_ok < MIN_CHANNELS:
            continue
        nd = np.int64(0)
        for chan in range(n_chan):
            d[chan] = np.nan
            if not ok[chan]:
                continue
            r = _running_median(med[:, k], ok, chan, buf)
            ref[chan] = r
            d[chan] = med[chan, k] - r
            ds[nd] = abs(d[chan])
            nd += 1
        # MAD of d about 0 (d is a deviation from the local level, centred by construction)
        sd = MAD_TO_SIGMA * _median(ds, nd)
        for chan in range(n_chan):
            if not ok[chan]:
                continue
            # RFI adds power: one-sided (a band edge that rolls off is not flagged)
            if d[chan] > max(threshold * sd, CHANNEL_REL_DEV * abs(ref[chan])):
                bad_chan[chan] = True
            elif sig[chan, k] > max(SCATTER_RATIO * _running_median(sig[:, k], ok, chan, buf),
                                    CHANNEL_REL_DEV * abs(med[chan, k])):
                bad_chan[chan] = True
    return bad_chan


@njit
def _count_new(start, stride, flag, prior, has_prior, rows, use_corr, counts):
    # rows[start::stride] (_numba.threaded): counts[start, 0, chan] += available, counts[start, 1, chan]
    # += newly flagged (:func:`_row_available_and_new`); each thread writes only counts[start]
    n_chan, n_corr = flag.shape[1], flag.shape[2]
    none = np.zeros((n_chan, n_corr), np.bool_)
    na = counts[start, 0]
    nf = counts[start, 1]
    for i in range(start, len(rows), stride):     # row-major: each row's channels are contiguous
        fr = flag[rows[i]]
        pr = prior[rows[i]] if has_prior else none
        for chan in range(n_chan):
            a, f = _row_available_and_new(fr, pr, chan, use_corr)
            na[chan] += a
            nf[chan] += f


@njit
def _flag_extended(start, stride, flag, prior, has_prior, rows, bad, use_corr):
    # rows[start::stride] (_numba.threaded; each row writes only itself): the channels ``bad`` in every
    # row, or the whole row when more than GROW of its available channels are newly flagged
    n_chan, n_corr = flag.shape[1], flag.shape[2]
    none = np.zeros((n_chan, n_corr), np.bool_)
    for i in range(start, len(rows), stride):
        fr = flag[rows[i]]
        pr = prior[rows[i]] if has_prior else none
        rna = 0
        rnf = 0
        for chan in range(n_chan):
            a, f = _row_available_and_new(fr, pr, chan, use_corr)
            rna += a
            rnf += f or (bad[chan] and a)      # a bad channel is newly flagged where it was available
        if rna > 0 and rnf > GROW * rna:
            fr[:, :] = True
        else:
            for chan in range(n_chan):
                if bad[chan]:
                    fr[chan, :] = True


@njit
def _grow_channels(bad, counts):
    # every channel with more than GROW of its available samples newly flagged joins ``bad``
    for chan in range(len(bad)):
        na = 0
        nf = 0
        for t in range(counts.shape[0]):
            na += counts[t, 0, chan]
            nf += counts[t, 1, chan]
        if not bad[chan] and na > 0 and nf > GROW * na:
            bad[chan] = True


@njit
def _extend_rows(flag, prior, has_prior, rows, bad, use_corr):
    """Extension over ``rows`` (the cross-correlation rows of one group), in place: ``bad`` (n_chan,)
    holds the channels already known bad and gains every channel with more than GROW of its available
    samples newly flagged; those channels are flagged in every row, then each row with more than GROW
    of its available channels newly flagged is flagged whole (all correlations).  Without a prior
    (``has_prior`` False) every sample is available.  Row-major loops on row views; serial (the
    kernels of :func:`_extend_rows_threaded` on one thread)."""
    if len(rows) == 0:
        return
    counts = np.zeros((1, 2, flag.shape[1]), np.int64)
    _count_new(0, 1, flag, prior, has_prior, rows, use_corr, counts)
    _grow_channels(bad, counts)
    _flag_extended(0, 1, flag, prior, has_prior, rows, bad, use_corr)


#: a group's extension runs on the thread pool from this many (row, channel) pairs (measured: 2000 groups
#: of 10 rows x 64 channels, 0.39 s threaded against 0.30 s serial)
THREADED_MIN_SAMPLES = 32768


#: ``_extend_rows_threaded(..., words=_FROM_FLAGS)``: the word views are made from the flags given
_FROM_FLAGS = object()


def _extend_rows_threaded(flag, prior, rows, bad, use_corr, words=_FROM_FLAGS):
    """:func:`_extend_rows` (with a prior) of one group: on C-contiguous flags of 1, 2 or 4 correlations
    the passes read each channel's flags as one word (:func:`_words`: the same counts and flags,
    branch-free and vectorised, ~5x faster; ``words``: :func:`_words` of ``flag`` and ``prior`` made
    once by the caller, or made here); a large group's two row passes on the thread pool (the same
    flags: the counts are sums, each row is written by one thread), a small group (fewer than
    :data:`THREADED_MIN_SAMPLES` row-channels) serially (:func:`_extend_words`): the pool's hand-over
    costs more than its work.  Without a word view, :func:`_extend_rows`' per-correlation passes.  The
    solve compiles only the word passes (issue 16, cold start: the per-correlation ones were another
    ~1.5-2 s of compile for the small groups)."""
    if len(rows) == 0:
        return
    w = _words(flag, prior, use_corr) if words is _FROM_FLAGS else words
    small = len(rows) * flag.shape[1] < THREADED_MIN_SAMPLES
    if w is None:
        if small:
            _extend_rows(flag, prior, np.bool_(True), rows, bad, use_corr)
            return
        counts = np.zeros((numba.get_num_threads(), 2, flag.shape[1]), np.int64)
        threaded(_count_new, len(rows), flag, prior, np.bool_(True), rows, use_corr, counts)
        _grow_channels(bad, counts)
        threaded(_flag_extended, len(rows), flag, prior, np.bool_(True), rows, bad, use_corr)
        return
    fw, pw, mask, ones = w
    if small:
        _extend_words(fw, pw, rows, bad, mask, ones)
        return
    counts = np.zeros((numba.get_num_threads(), 2, flag.shape[1]), np.int64)
    threaded(_count_new_words, len(rows), fw, pw, rows, mask, counts)
    _grow_channels(bad, counts)
    threaded(_flag_extended_words, len(rows), fw, pw, rows, bad, mask, ones)


_WORD = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def _words(flag, prior, use_corr):
    """``(fw, pw, mask, ones)``: ``flag`` and ``prior`` (n_row, n_chan, n_corr) bool viewed as
    (n_row, n_chan) unsigned words, one per channel (byte c of a word = correlation c: little-endian),
    ``mask`` the word with bit 0 of each byte of ``use_corr`` set and ``ones`` the word of every
    correlation True; None when the layout does not allow it (other n_corr, non-contiguous, big-endian).
    A numpy bool is the byte 0 or 1, so for a word p of prior flags ``(p ^ mask) & mask`` has a bit set
    exactly for the correlations of ``use_corr`` not flagged before (available), and ``& f`` with the
    flags now for those newly flagged (:func:`_row_available_and_new`)."""
    import sys

    views = _word_views(flag, prior) if sys.byteorder == "little" else None
    if views is None:
        return None
    n_corr = flag.shape[2]
    dt = _WORD[n_corr]
    mask = 0
    for c in np.asarray(use_corr, np.int64):
        mask |= 1 << (8 * int(c))
    ones = sum(1 << (8 * c) for c in range(n_corr))
    return views + (dt(mask), dt(ones))


def _word_views(*arrays):
    """C-contiguous bool arrays of one shape (rows, n_chan, n_corr) viewed as (rows, n_chan) unsigned
    words, one per channel (byte c of a word = correlation c, in memory order), or None when the layout
    has no word type (:data:`_WORD`) or an array is not such a bool array.  Shared by the extension
    (:func:`_words`) and the bad values' kernels (:func:`_bad_word_views`)."""
    shape = arrays[0].shape
    dt = _WORD.get(shape[2]) if len(shape) == 3 else None
    if dt is None or any(a.dtype != np.bool_ or a.shape != shape or not a.flags.c_contiguous for a in arrays):
        return None
    return tuple(a.view(dt).reshape(shape[:2]) for a in arrays)


def _bad_scratch(flag_in, out):
    """``(codes, words)`` for the bad values' kernels: per-thread sample codes (threads, n_chan *
    n_corr) uint8 and :func:`_bad_word_views` of ``flag_in``, ``out`` and the codes (None when the
    layout has none)."""
    codes = np.empty((max(1, numba.get_num_threads()), out.shape[1] * out.shape[2]), np.uint8)
    return codes, _bad_word_views(flag_in, out, codes)


def _bad_word_views(flag_in, out, codes):
    """``(flag_in, out, codes)`` viewed as (rows, n_chan) unsigned words, one per channel (byte c =
    correlation c, in memory order), for :func:`_bad_decide_words` in :func:`_levels_and_ratios`; None
    when the layout has no word type (:data:`_WORD`) or an array is not C-contiguous bool / uint8."""
    views = _word_views(flag_in, out) if codes.flags.c_contiguous else None
    if views is None:
        return None
    return views + (codes.view(_WORD[out.shape[2]]).reshape(codes.shape[0], out.shape[1]),)


@njit
def _count_new_words(start, stride, fw, pw, rows, mask, counts):
    # _count_new on the word views (_words): the same counts
    n_chan = fw.shape[1]
    na = counts[start, 0]
    nf = counts[start, 1]
    for i in range(start, len(rows), stride):
        f = fw[rows[i]]
        p = pw[rows[i]]
        for chan in range(n_chan):
            av = (p[chan] ^ mask) & mask
            na[chan] += av != 0
            nf[chan] += (av & f[chan]) != 0


@njit
def _extend_words(fw, pw, rows, bad, mask, ones):
    # _extend_rows on the word views (_words), serially (a small group): the same flags
    counts = np.zeros((1, 2, fw.shape[1]), np.int64)
    _count_new_words(0, 1, fw, pw, rows, mask, counts)
    _grow_channels(bad, counts)
    _flag_extended_words(0, 1, fw, pw, rows, bad, mask, ones)


@njit
def _flag_extended_words(start, stride, fw, pw, rows, bad, mask, ones):
    # _flag_extended on the word views (_words): the same flags
    n_chan = fw.shape[1]
    for i in range(start, len(rows), stride):
        f = fw[rows[i]]
        p = pw[rows[i]]
        rna = 0
        rnf = 0
        for chan in range(n_chan):
            av = (p[chan] ^ mask) & mask
            a = av != 0
            rna += a
            rnf += ((av & f[chan]) != 0) | (bad[chan] & a)
        if rna > 0 and rnf > GROW * rna:
            f[:] = ones
        else:
            for chan in range(n_chan):
                if bad[chan]:
                    f[chan] = ones


def parallel_hands(corr_types):
    """Indices of the parallel-hand correlations (XX/YY, RR/LL) among ``corr_types``."""
    idx = [i for i, c in enumerate(corr_types) if str(c) in ("XX", "YY", "RR", "LL")]
    return np.asarray(idx or list(range(len(corr_types))), np.int64)


def flag_persistent(data, model, flag, group, ant1, ant2, use_corr, threshold):
    """Per-group channel statistics (module docstring).

    Parameters
    ----------
    data, model : (row, chan, corr) complex (model may be None: statistic |V|)
    flag : (row, chan, corr) bool, not modified
    group : (row,) int  -- the row group (:func:`stat_blocks`)
    ant1, ant2 : (row,) int -- antennas (autocorrelations are neither used nor flagged)
    use_corr : int array -- the correlations the statistics use (the parallel hands)
    threshold : float -- robust sigmas (rfi_threshold); <= 0 disables

    Returns
    -------
    (flags (row, chan, corr) bool, a new array; number of newly flagged samples)
    """
    out = np.array(flag, bool, copy=True)
    _persistent_into(data, model, out, out.copy(), group, ant1, ant2, use_corr, threshold)
    return out, int(np.count_nonzero(out) - np.count_nonzero(flag))


def _persistent_into(data, model, out, prior, group, ant1, ant2, use_corr, threshold, then_mad=False,
                     time=None, bad_in=None):
    """:func:`flag_persistent` in place on ``out`` (which starts as ``prior``, the flags the channel
    extension counts from: a copy the caller owns, as 1a.'s flags are added to it -- a hand without
    signal is treated like one flagged in the MS, and never extends to the other hand's samples).

    ``then_mad``: each group's rows then get the per-row MAD (:func:`alakazam.core.rfi.mad_flag`, in
    place) and the final extension (:func:`extend` with ``prior``) right after its channel statistics,
    the MAD from the ratios the statistics' pass computed (kept per group up to
    :data:`KEEP_X_BYTES`), and the rows outside the groups (autocorrelations) the MAD after them: the
    flags of :func:`flag_chunk`'s stages one after the other over the whole chunk, as each stage
    reads and writes only the rows of one group (or one row).

    ``bad_in`` = (flag, weight): ``out`` and ``prior`` are not filled yet; every row first gets
    :func:`flag_bad_values`' flags from them (into ``out``, copied to ``prior``) -- the cross-correlation
    rows in the channel statistics' pass (one read of each row's data), the others before the groups.
    Needs threshold > 0 and channels (flag_chunk's path)."""
    n_row, n_chan = data.shape[:2]
    if threshold is None or threshold <= 0 or n_row == 0 or n_chan == 0:
        if bad_in is not None:
            raise ValueError("bad_in needs threshold > 0, rows and channels")
        return
    use_model = model is not None
    data = np.ascontiguousarray(data)           # (the kernels' flat row views; a copy only when strided)
    m = np.ascontiguousarray(model) if use_model else np.zeros((1, 1, 1), np.complex64)
    ant1, ant2 = np.asarray(ant1), np.asarray(ant2)
    cross = ant1 != ant2
    group = np.asarray(group)
    sel = np.flatnonzero(cross)
    if time is None:
        order = sel[np.argsort(group[sel], kind="stable")].astype(np.int64)
    else:       # a group's rows by (time, baseline), whatever the MS's row order: the statistics thin
        # rows by position (every k-th row of a block), so the flags -- and the solutions -- of a
        # re-ordered copy of an MS (split, concat, conversion) were not those of the original
        t = np.asarray(time, float)[sel]
        lo = np.minimum(ant1[sel], ant2[sel])
        hi = np.maximum(ant1[sel], ant2[sel])
        order = sel[np.lexsort((hi, lo, t, group[sel]))].astype(np.int64)
    if bad_in is not None:
        fuse = True
        flag_in = np.ascontiguousarray(bad_in[0], np.bool_)      # (_bad_decide's word views)
        w_in = np.broadcast_to(bad_in[1], data.shape)
        rest = np.flatnonzero(~cross).astype(np.int64)       # the rows no group's pass reads
        if len(rest):
            threaded(_bad_values_rows, len(rest), rest, data, m, w_in, flag_in, out, prior, use_model,
                     *_bad_scratch(flag_in, out))
    else:
        fuse = False
        flag_in, w_in = out, _NO_WEIGHT
    if len(order) == 0:
        if then_mad:            # autocorrelations only: their per-row MAD all the same
            others = np.flatnonzero(~cross).astype(np.int64)
            if len(others):
                threaded(rfi._mad_flag_rows, len(others), others, _NO_X, False, data, m, use_model, out,
                         float(threshold), rfi.NO_KNOWN, rfi.NO_KNOWN_CORR)
        return
    g = group[order]
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(order)]]).astype(np.int64)
    use_corr = np.asarray(use_corr, np.int64)
    n_k = len(use_corr)
    level = np.full((n_row, n_k), np.nan)
    burst = np.zeros(n_row, np.bool_)
    # bursts: per (group, baseline) across the group's integrations; ``so`` keeps the group order of
    # ``order`` (group is its first key), so a group's segments lie in its own [lo, hi)
    a_lo = np.minimum(ant1, ant2).astype(np.int64)[order]
    a_hi = np.maximum(ant1, ant2).astype(np.int64)[order]
    so = np.lexsort((a_hi, a_lo, g))
    sk = np.column_stack([g, a_lo, a_hi])[so]
    seg_cuts = np.flatnonzero((sk[1:] != sk[:-1]).any(axis=1)) + 1
    seg_bounds = np.concatenate([[0], seg_cuts, [len(so)]]).astype(np.int64)
    seg_rows = order[so]
    thr = float(threshold)
    words = _words(out, prior, use_corr)        # the extension's word views (None: no such layout)
    stride = max(1, n_chan // MAX_STAT_SAMPLES)
    n_corr = data.shape[2]
    # the kept ratios: one buffer for the largest group, its leading rows for each (a new array per
    # group is a new mapping of tens of MB, its pages faulted again every group)
    most = int(np.diff(bounds).max())
    keep_x = then_mad and most * n_chan * n_corr * 4 <= KEEP_X_BYTES
    x_all = np.empty((most, n_chan, n_corr), np.float32) if keep_x else _NO_X
    # the normalised ratios likewise: one buffer for the largest group (every element of a group's
    # leading part is written by :func:`_levels_and_ratios`)
    buf_all = np.empty(n_k * n_chan * most, np.float32)
    # the bad values' per-thread sample codes, and their word views (None: the kernel's byte path)
    codes, bad_words = _bad_scratch(flag_in, out)
    levels = _AntennaLevels()           # 1a. pooled per antenna across the chunk's blocks
    for i in range(len(bounds) - 1):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        buf = buf_all[:n_k * n_chan * (hi - lo)].reshape(n_k, n_chan, hi - lo)
        xkeep = x_all[:hi - lo] if keep_x else _NO_X
        coh = np.zeros((hi - lo, n_k, 3))
        known = np.empty((hi - lo, n_k, 2))
        threaded(_levels_and_ratios, hi - lo, data, m, out, order, lo, hi, use_corr, use_model, level, buf,
                 stride, xkeep, keep_x, coh, fuse, flag_in, w_in, prior, known, codes, bad_words)
        sb = seg_bounds[(seg_bounds >= lo) & (seg_bounds <= hi)]
        cols = (so[sb[0]:sb[-1]] - lo).astype(np.int64)      # buf columns of the segments, in order
        sbl = (sb - sb[0]).astype(np.int64)
        rows_g = order[lo:hi]
        first_order = partial(_first_order_block, data, m, use_model, out, rows_g, cols, sbl, use_corr)
        levels.begin(rows_g, cols, sbl, sk[sb[:-1], 1:], first_order)
        dead, live = _no_signal(coh, cols, sbl, sk[sb[:-1], 1:], first_order, levels)
        if dead.any():
            _flag_no_signal(out, prior, buf, rows_g, dead, use_corr, n_corr, level)
        _bursts(out, level, seg_rows, sb, thr, burst)
        if hi - lo < MIN_ROWS:
            if then_mad:
                _mad_and_extend(data, m, use_model, out, prior, order[lo:hi], xkeep, keep_x, thr, use_corr,
                                words, known)
            continue
        med = np.full((n_chan, n_k), np.nan)
        sig = np.full((n_chan, n_k), np.nan)
        nuse = np.zeros((n_chan, n_k), np.int64)
        step = max(1, -(-(hi - lo) // MAX_STAT_SAMPLES))
        isb = burst[order[lo:hi]]                   # the bursts per column of ``buf``
        # 1c. the baseline segments of the group: buf columns so[sb] - lo (``so`` indexes ``order``)
        rel = _relative_scales(buf, cols, sbl, isb, step, sk[sb[:-1], 1:], live)
        threaded(_time_direction, n_chan, buf, out, order, lo, thr, med, sig, nuse, isb, step, rel)
        bad = _bad_channels(n_chan, use_corr, thr, med, sig, nuse)
        # 3. extension: channels, then rows (counted over the parallel hands of the cross-correlations;
        # ``order`` holds only those rows).  Only what the RFI stages flagged counts, over the samples
        # that were unflagged before them (``prior``): antennas flagged in the MS (a dead antenna, a
        # drop-out) never extend to whole channels or rows -- in a small array they are most of a
        # channel's baselines.
        _extend_rows_threaded(out, prior, order[lo:hi], bad, use_corr, words)
        if then_mad:
            _mad_and_extend(data, m, use_model, out, prior, order[lo:hi], xkeep, keep_x, thr, use_corr, words,
                            known)
    for k, r in levels.dead_rows():     # 1a. pooled: antennas without signal in a block (_AntennaLevels)
        for a in (out, prior):
            a[r, :, use_corr[k]] = True
            if n_corr == 4:
                a[r, :, 1:3] = True
    if then_mad:
        others = np.flatnonzero(~cross).astype(np.int64)        # autocorrelations: the MAD only
        if len(others):
            threaded(rfi._mad_flag_rows, len(others), others, _NO_X, False, data, m, use_model, out, thr,
                     rfi.NO_KNOWN, rfi.NO_KNOWN_CORR)


#: a group's ratios (float32 per sample) are kept for its per-row MAD up to this many bytes (else the
#: MAD computes them again)
KEEP_X_BYTES = 256 << 20
_NO_X = np.zeros((1, 1, 1), np.float32)
#: the weights :func:`_levels_and_ratios` does not read (not fusing the bad values): a broadcast
#: float32 view, the type of the weights read from SIGMA / WEIGHT (one compile for both uses)
_NO_WEIGHT = np.broadcast_to(np.float32(0), (1, 1, 1))


def _mad_and_extend(data, m, use_model, out, prior, rows, xkeep, keep_x, thr, use_corr, words, known):
    """The per-row MAD of ``rows`` (one group's, in ``order``; the ratios in ``xkeep`` when kept; ``known``
    the row medians of :func:`_levels_and_ratios`, per group position and hand of ``use_corr``), then
    the group's final extension (:func:`extend`'s, with ``prior``; ``words``: :func:`_words` of ``out``
    and ``prior``)."""
    threaded(rfi._mad_flag_rows, len(rows), rows, xkeep, keep_x, data, m, use_model, out, thr, known,
             use_corr)
    _extend_rows_threaded(out, prior, rows, np.zeros(out.shape[1], np.bool_), use_corr, words)


def stat_blocks(scan, time):
    """Row group (n_row,) int64 of each row: ``scan * 2**20 + block``, block = (rank of the row's
    integration among the scan's integrations present) // BLOCK_INTEGRATIONS, with round(n / B) blocks
    per scan of n integrations (the remainder joins the last block, so no block has fewer than B/2
    integrations unless the scan has).  Depends only on the
    set of (scan, time) of the rows given, so the whole scans must be given (tier 1: the (field, SPW)
    read; tiers 2/3: the times of the group's rows, :func:`block_reads`)."""
    scan = np.asarray(scan, np.int64)
    time = np.asarray(time, float)
    if len(scan) == 0:
        return np.zeros(0, np.int64)
    # the distinct (scan, time) pairs in (scan, time) order and each row's pair: a lexsort and its
    # run boundaries (np.unique(axis=0) of the pairs gives the same, 4-5x slower)
    order = np.lexsort((time, scan))
    so, to = scan[order], time[order]
    new = np.ones(len(order), bool)
    new[1:] = (so[1:] != so[:-1]) | (to[1:] != to[:-1])
    inv = np.empty(len(order), np.int64)
    inv[order] = np.cumsum(new) - 1
    ps = so[new]
    first = np.searchsorted(ps, ps, side="left")               # pairs sorted by (scan, time)
    n_int = np.searchsorted(ps, ps, side="right") - first      # integrations of the pair's scan
    rank = np.arange(len(ps)) - first
    # round(n / B) blocks per scan, the remainder joining the last: every block has >= B/2 integrations
    n_blk = np.maximum(1, np.floor(n_int / BLOCK_INTEGRATIONS + 0.5).astype(np.int64))
    gid = ps * (2 ** 20) + np.minimum(rank // BLOCK_INTEGRATIONS, n_blk - 1)
    return gid[inv]


def block_reads(ms, rows, max_rows):
    """Split MS row numbers (of whole scans) into reads of whole row groups (:func:`stat_blocks`) of
    at most ``max_rows`` rows -- at least one group per read, so a group larger than ``max_rows`` is
    read whole.  Returns a list of (row numbers, group ids)."""
    from .ms_io import main_table

    rows = np.asarray(rows, np.int64)
    if len(rows) == 0:
        return []
    with main_table(str(ms)) as t:
        q = t.selectrows(rows)
        time = q.getcol("TIME")
        scan = q.getcol("SCAN_NUMBER")
        q.close()
    gid = stat_blocks(scan, time)
    order = np.argsort(gid, kind="stable")
    g = gid[order]
    cuts = np.concatenate([[0], np.flatnonzero(g[1:] != g[:-1]) + 1, [len(g)]])
    out, start = [], 0
    for i in range(1, len(cuts)):
        if cuts[i] - cuts[start] > max(int(max_rows), 1) and i - 1 > start:
            sel = np.sort(order[cuts[start]:cuts[i - 1]])
            out.append((rows[sel], gid[sel]))
            start = i - 1
    sel = np.sort(order[cuts[start]:])
    out.append((rows[sel], gid[sel]))
    return out


def flag_chunk(chunk, corr_types, threshold, groups=None):
    """All solve-time sample flags of a chunk as read: :func:`flag_bad_values` (always), then
    :func:`flag_persistent` and the per-row MAD of :func:`alakazam.core.rfi.mad_flag` (both with
    ``threshold > 0``) on the row groups ``groups`` (default :func:`stat_blocks` of the chunk).
    Returns the new flag array (``chunk.flag`` is not modified)."""

    if threshold is None or threshold <= 0 or chunk.n_row == 0:
        return flag_bad_values(chunk.data, chunk.model, chunk.weight, chunk.flag)[0]
    if not np.isfinite(threshold):      # (before the no-channel return: a chunk of 0 channels raised too)
        raise AlakazamError(f"rfi_threshold: expected a finite number (<= 0 disables), got {threshold!r}")
    if chunk.data.shape[1] == 0:
        return flag_bad_values(chunk.data, chunk.model, chunk.weight, chunk.flag)[0]
    # the bad values first: computed row by row in the channel statistics' pass (``bad_in``), into
    # ``flag`` and ``prior`` (what the RFI stages below start from: extension counts only theirs)
    # fresh pages faulted in by one call each (core/prefault.populate_now), not page by page where the
    # row pass first writes them: 0.3-0.5 s of the 3C147 chunk's 2.0 s (issue 16 MS, 2 x 184 MB)
    flag = prefault.populate_now(np.empty(chunk.data.shape, np.bool_))
    prior = prefault.populate_now(np.empty(chunk.data.shape, np.bool_))
    if groups is None:
        groups = stat_blocks(chunk.scan, chunk.time)
    # the channel statistics first: a persistent RFI channel left in the rows would bias the per-row
    # median and MAD (destructive RFI makes a legitimate bandpass peak look like an outlier).  Every
    # stage works in place on ``flag`` (the same flags as the copying public functions)
    use = parallel_hands(corr_types)
    # then, group by group, the per-row MAD and the extension again (``then_mad``: the same flags as
    # rfi.mad_flag over the chunk then extend, from the ratios the channel statistics computed)
    _persistent_into(chunk.data, chunk.model, flag, prior, groups, chunk.ant1, chunk.ant2, use, threshold,
                     then_mad=True, time=chunk.time, bad_in=(chunk.flag, chunk.weight))
    return flag


@njit
def _extend_groups(start, stride, flag, prior, has_prior, order, starts, use_corr):
    # row groups start, start + stride, ... on this thread (_numba.threaded; disjoint rows: each group
    # writes only its own rows)
    n_chan = flag.shape[1]
    for gi in range(start, len(starts) - 1, stride):
        _extend_rows(flag, prior, has_prior, order[starts[gi]:starts[gi + 1]], np.zeros(n_chan, np.bool_),
                     use_corr)


def extend(flag, groups, cross, use_corr, prior=None):
    """Extension within the row groups (in place; returned): a channel with more than GROW of its
    available cross-correlation samples newly flagged (in any of ``use_corr``) is flagged in every row
    of the group, then a row with more than GROW of its available channels newly flagged is flagged
    whole; all correlations.  "Newly" and "available" are relative to ``prior`` (the flags before the
    RFI stages; None = no flags before): flags already in the MS (a dead or dropped antenna) never
    extend.  One compiled pass per group (:func:`_extend_groups`)."""
    rows = np.flatnonzero(cross)
    if len(rows) == 0:
        return flag
    order = rows[np.argsort(np.asarray(groups)[rows], kind="stable")].astype(np.int64)
    g = np.asarray(groups)[order]
    starts = np.concatenate([[0], np.flatnonzero(g[1:] != g[:-1]) + 1, [len(order)]]).astype(np.int64)
    has_prior = prior is not None
    pr = np.asarray(prior, bool) if has_prior else np.zeros((1, 1, 1), np.bool_)
    threaded(_extend_groups, len(starts) - 1, flag, pr, has_prior, order, starts,
             np.asarray(use_corr, np.int64))
    return flag
