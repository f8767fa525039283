"""akapply of a binned term (a gain or bandpass of 4-MHz bins) without a frequency part in interp maps
each channel to its nearest bin (SEED: nearest-frequency mapping), where CASA's applycal reads the same
string as 'time,linear': a warning says so once per term and SPW (core/freqinterp.casa_default_notes;
a review: 0.1 of max |V| apart from CASA on the same string).  Not for a freq part given, delays, one
bin, or bins on the data channels."""

import logging

from alakazam.caltasks import akapply
from alakazam.core.freqinterp import casa_default_notes, flagged_channel_notes
from alakazam.calibration import chain


def test_binned_gain_without_freq_part_is_noted(constant_gains, caplog):
    ms, cals = constant_gains
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akapply(vis=ms, gaintable=[cals["scanF"]] * 2, jones=["K0", "G0"], interp=["nearest", "linear"],
                field="TARGET")
    notes = [r.getMessage() for r in caplog.records if "reads it as 'time,linear'" in r.getMessage()]
    assert len(notes) == 1 and notes[0].startswith("G0: SPW 0") and "4 solution bins" in notes[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akapply(vis=ms, gaintable=[cals["scanF"]] * 2, jones=["K0", "G0"],
                interp=["nearest", "linear,linear"], field="TARGET")
    assert "reads it as 'time,linear'" not in caplog.text


def test_no_note_for_delays_one_bin_or_bins_on_the_channels(constant_gains):
    ms, cals = constant_gains
    freqs = chain.load_term(cals["kbg"], "G0").sets[0].freq            # the bandpass's own channels
    terms = [chain.load_term(cals["kbg"], k) for k in ("K0", "G0", "G1")]
    assert casa_default_notes(terms, 0, freqs) == []
    g4 = chain.load_term(cals["scanF"], "G0")
    assert len(casa_default_notes([g4], 0, freqs)) == 1
    g4.freq_interp = "nearest"
    assert casa_default_notes([g4], 0, freqs) == []


def _with_freqs(term, freqs):
    """A copy of ``term`` whose sets lie at ``freqs`` (as many as each set has bins)."""
    import copy

    import numpy as np

    out = copy.copy(term)
    out.sets = []
    for s in term.sets:
        v = copy.copy(s)
        v.freq = freqs[: len(np.atleast_1d(s.freq))]
        out.sets.append(v)
    return out


def test_note_for_narrow_channels_at_high_frequency(constant_gains):
    """Bins of 4 channels of 15.6 kHz at 100 GHz are noted too (a tolerance of 1e-6 of the frequency,
    100 kHz there, took every channel for a bin centre; a review); bins on the channels are not."""
    import numpy as np

    _, cals = constant_gains
    g = chain.load_term(cals["scanF"], "G0")
    n_bin = len(np.atleast_1d(g.sets[0].freq))
    chans = 100e9 + 15.625e3 * np.arange(64)
    bins = chans.reshape(16, 4).mean(axis=1)
    assert len(casa_default_notes([_with_freqs(g, bins)], 0, chans[: 4 * n_bin])) == 1
    assert casa_default_notes([_with_freqs(g, chans)], 0, chans[:n_bin]) == []


def test_flagged_channels_of_a_per_channel_term_are_noted(constant_gains):
    """Review 54g: a per-channel bandpass with some flagged channels, applied with interp 'linear': its
    flagged channels flag their data, where CASA's applycal (reading 'linear,linear') bridges them in
    frequency -- 400 samples flagged by akapply only and 0.20 of max |V| in the neighbouring scans --
    unsaid.  Noted now; not with a freq part, nor without flagged channels."""
    import numpy as np

    _, cals = constant_gains
    bp = chain.load_term(cals["kbg"], "G0")          # the bandpass (its bins are the channels)
    freqs = bp.sets[0].freq
    assert flagged_channel_notes([bp], 0, freqs) == []
    s = bp.sets[0]
    s.flags = np.array(s.flags)
    s.flags[0, 1, 0] = True                       # one channel of one antenna at one time
    notes = flagged_channel_notes([bp], 0, freqs)
    assert len(notes) == 1 and "its own solution channel, and some are flagged" in notes[0]
    assert casa_default_notes([bp], 0, freqs) == []         # (the binned terms' warning: not this)
    bp.freq_interp = "linear"
    assert flagged_channel_notes([bp], 0, freqs) == []
