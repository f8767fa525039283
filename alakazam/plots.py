"""Solution plots (PNG, matplotlib's Agg canvas; pyplot is never imported, so no window opens and a
user's interactive backend is left alone).

What is drawn for each kind of term (the *kind* of a solution key, :func:`plot_kind`):

=========  =====================================================  ====================================
kind       terms                                                  panels (x axis)
=========  =====================================================  ====================================
delay      K, KC (any key that stores ``delay``)                  delay (ns) per antenna and scan (time)
freq       bandpass G (more than one frequency bin), D, CP        amplitude and phase (frequency)
time       G with one frequency bin (and D/CP solved per time)    amplitude and phase (time)
=========  =====================================================  ====================================

Both feeds are drawn (p: ``J[0, 0]``, q: ``J[1, 1]``; for D the two leakages ``d_pq = J[0, 1]`` and
``d_qp = J[1, 0]``), labelled with the feed names (X/Y or R/L) -- except for a term that holds a value
on one of them only (the registry's ``value_hands``): KC's delay (tau_p, labelled ``X-Y``) and CP's
phase (J[1, 1], labelled ``Y-X``) are drawn once, not beside a constant 0.  With several SPWs in a
panel (the overview, and the antenna pages) each SPW has its own colours (and marker): ``X spw0`` blue,
``X spw1`` green, ``Y spw0`` orange, ``Y spw1`` red, ...; a frequency plot shows each SPW over its own
frequency range.  Flagged cells are drawn as grey crosses (label ``flagged``) at their stored value,
or at the foot of the panel when the stored value is not finite (alakazam stores NaN: they were drawn at
0, which squashed the valid values); valid cells as coloured dots joined by lines.  The y range of a
panel is that of its valid values (a flagged value outside it is not drawn inside the axes).  With
several fields in a panel (the overview) each (field, SPW) has its own colours and marker and its labels
name the field: each field's solutions are lines of their own, never joined across fields.  A solution
that is not finite but not flagged (a hand-edited or foreign table: alakazam flags such solutions)
cannot be drawn: akplot warns once per key with how many.  Phase is in degrees, wrapped to
[-180, 180); frequency in GHz; time in hours (UTC) from 0 h of the first solution's MJD day.  The
reference antenna's panel title reads ``<name> (ref)`` and is drawn in red (the reference of any SPW
drawn in the panel).

Files, per key (``iteraxis`` chooses the pages, like plotms' iteration):

* ``<outdir>/<key>_overview.png``: one grid per key, one panel per antenna, every selected field
  and SPW (delay for K/KC, phase for CP, amplitude otherwise).
* ``iteraxis='antenna'`` (default): ``<outdir>/<key>/<key>_<field>_<ant>.png`` -- one page per
  field and antenna (amplitude above phase, or the delay), every selected SPW of the field that has
  the antenna on it, as plotms (an antenna in any of the field's SPWs gets a page); with several SPWs
  the legend is to the right of the axes.  (Before, a page per field, SPW and antenna,
  ``<key>_<field>_spw<S>_<ant>.png``: 2,600 files per field and key on 32 SPWs x 27 antennas.)
* ``iteraxis='spw'``: ``<outdir>/<key>/<key>_<field>_spw<S>_amp.png`` and ``..._phase.png`` (the
  delay: ``<key>_<field>_spw<S>.png``) -- per field and SPW, a grid of antennas for each quantity.
* ``iteraxis='field'``: ``<outdir>/<key>/<key>_<field>_amp.png``, ``..._phase.png`` (the delay:
  ``<key>_<field>.png``) -- the same per field, every SPW in each panel.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .core import handflags
from .errors import AlakazamError, ParameterError
from .jones import terms as jterms

log = logging.getLogger("alakazam.plots")

ITERAXES = ("antenna", "spw", "field")
FEED_NAMES = {"linear": ("X", "Y"), "circular": ("R", "L")}
POL_COLOURS = ("tab:blue", "tab:orange")
#: colours of the p and q hand of the k-th SPW of a panel (k = 0: POL_COLOURS)
SPW_COLOURS = (("tab:blue", "tab:green", "tab:purple", "tab:cyan", "navy", "darkgreen"),
               ("tab:orange", "tab:red", "tab:brown", "tab:pink", "tab:olive", "goldenrod"))
FLAG_COLOUR = "0.55"
FLAG_LABEL = "flagged"
#: the gid of the flagged crosses' lines (told from the valid lines by :func:`_limits`)
FLAG_GID = "ak-flagged"
REF_COLOUR = "tab:red"
#: the k-th SPW's marker: with SPW_COLOURS' 6 colours (k % 6) and these 11 markers (k % 11), coprime,
#: the first 66 SPWs each get their own (colour, marker) -- with 6 markers SPWs k and k + 6 looked the
#: same on a 9- or 33-SPW page (review 57d)
SPW_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h")


@dataclass
class Series:
    """One key's solutions for one field and SPW, every scan group joined in time order."""

    key: str
    jones_type: str
    field: str
    spw: int
    time: np.ndarray           # (n_t,) MJD seconds
    freq: np.ndarray           # (n_f,) Hz
    jones: np.ndarray          # (n_ant, n_f, n_t, 2, 2)
    flags: np.ndarray          # (n_ant, n_f, n_t, 2): per hand (SolutionSet.hand_flags; core/handflags.py)
    delay: Optional[np.ndarray]   # (n_ant, n_f, n_t, 2) ns
    scan: np.ndarray           # (n_t,) scan group of each time
    ant_names: List[str]
    ref_ant: str
    feed_basis: str
    hands: tuple = (0, 1)      # hands the MS records (attr hands: (0,) for RR / XX only); others not drawn


def plot_kind(jones_type: str, n_freq: int, n_time: int, has_delay: bool) -> str:
    """'delay', 'freq' or 'time' (module docstring)."""
    if has_delay:
        return "delay"
    if n_freq > 1 or (jterms.get(jones_type).scan_sampled and n_time == 1):
        return "freq"
    return "time"


def load_series(sets, key) -> List[Series]:
    """SolutionSets of one key -> one :class:`Series` per (field, SPW)."""
    groups: Dict[tuple, list] = {}
    for s in sets:
        groups.setdefault((s.field_name, s.spw), []).append(s)
    out = []
    for (fname, spw), ss in groups.items():
        ss = sorted(ss, key=lambda s: float(s.time[0]) if len(s.time) else 0.0)
        names = ss[0].ant_names
        for s in ss[1:]:
            if s.ant_names != names or s.jones.shape[1] != ss[0].jones.shape[1]:
                raise AlakazamError(f"{key}: field {fname} SPW {spw}: scan groups differ in antennas "
                                    "or frequency bins; cannot join them in one plot")
        t = np.concatenate([s.time for s in ss])
        order = np.argsort(t, kind="stable")
        a = ss[0].attrs
        out.append(Series(
            key=key, jones_type=str(a.get("jones_type", re.sub(r"\d+$", "", key))), field=fname, spw=spw,
            time=t[order], freq=np.asarray(ss[0].freq, float),
            jones=np.concatenate([s.jones for s in ss], axis=2)[:, :, order],
            flags=np.concatenate([s.hand_flags() for s in ss], axis=2)[:, :, order],
            delay=(np.concatenate([s.delay for s in ss], axis=2)[:, :, order]
                   if ss[0].delay is not None else None),
            scan=np.concatenate([np.full(len(s.time), s.scan_id) for s in ss])[order],
            ant_names=list(names), ref_ant=str(a.get("ref_ant_name", "")),
            feed_basis=str(a.get("feed_basis", "linear")),
            hands=tuple(sorted({h for x in ss for h in handflags.set_hands(x)}))))
    return sorted(out, key=lambda s: (s.field, s.spw))


# ---------------------------------------------------------------- quantities
def _pol_labels(s: Series):
    p, q = FEED_NAMES.get(s.feed_basis, ("p", "q"))
    tt = jterms.get(s.jones_type)
    if not tt.diagonal:
        return (f"d_{p}{q}", f"d_{q}{p}")
    if tt.cross_only:           # one value between the feeds: KC's tau_p (X-Y), CP's J[1, 1] (Y-X)
        return (f"{p}-{q}", f"{q}-{p}")
    return (p, q)


def _drawn_hands(s: Series):
    """The hands drawn: those the MS records and the term holds a value on (registry value_hands)."""
    return [h for h in (0, 1) if h in s.hands and h in jterms.get(s.jones_type).value_hands]


def _elements(s: Series):
    """(n_ant, n_f, n_t, 2) complex: the two plotted elements per cell."""
    j = s.jones
    if not jterms.get(s.jones_type).diagonal:
        return np.stack([j[..., 0, 1], j[..., 1, 0]], axis=-1)
    return np.stack([j[..., 0, 0], j[..., 1, 1]], axis=-1)


def nonfinite_count(s: Series) -> int:
    """Solutions of ``s`` that are not finite on a drawn hand but not flagged (cannot be drawn)."""
    return int(handflags.nonfinite_unflagged(s.jones_type, s.jones, s.delay, s.flags, s.hands).sum())


def _hours(t, t0_day):
    return (np.asarray(t, float) - t0_day) / 3600.0


def _quantity(s: Series, what: str):
    """(n_ant, n_f, n_t, 2) real values of 'amp', 'phase' (deg) or 'delay' (ns)."""
    if what == "delay":
        return np.asarray(s.delay, float)
    e = _elements(s)
    if what == "amp":
        return np.abs(e)
    return (np.degrees(np.angle(e)) + 180.0) % 360.0 - 180.0


def _ylabel(what, s):
    return {"amp": "amplitude", "phase": "phase (deg)", "delay": "delay (ns)"}[what] + \
        (f" [{s.jones_type}]" if s.jones_type else "")


# ---------------------------------------------------------------- drawing
def _draw(ax, s: Series, ia: int, what: str, kind: str, t0_day: float, marker_scale=1.0,
          label_suffix="", marker="o", spw_index=0):
    """Draw antenna ``ia`` of ``s`` on ``ax``: per feed one line per (frequency bin) for time/delay
    plots, one line per time bin for frequency plots, in the colours of the panel's ``spw_index``-th
    SPW; flagged cells as grey crosses."""
    vals = _quantity(s, what)[ia]               # (n_f, n_t, 2)
    flags = np.asarray(s.flags[ia], bool)       # (n_f, n_t, 2): a flagged hand is not drawn, the other is
    if flags.ndim == 2:
        flags = np.repeat(flags[..., None], 2, axis=-1)
    labels = _pol_labels(s)
    ms = 4 * marker_scale
    fx, fy = [], []
    for ip in _drawn_hands(s):                  # a hand the MS does not record or the term lacks: none
        colour = SPW_COLOURS[ip][spw_index % len(SPW_COLOURS[ip])]
        if kind == "freq":
            x_all = s.freq / 1e9
            curves = [(vals[:, it, ip], flags[:, it, ip]) for it in range(vals.shape[1])]
        else:
            x_all = _hours(s.time, t0_day)
            curves = [(vals[ifr, :, ip], flags[ifr, :, ip]) for ifr in range(vals.shape[0])]
        for ic, (y, f) in enumerate(curves):
            good = ~f & np.isfinite(y)
            yy = np.where(good, y, np.nan)
            ax.plot(x_all, yy, marker, ls="-" if kind != "delay" else "none", color=colour,
                    ms=ms, lw=0.8,
                    label=(labels[ip] + label_suffix) if ic == 0 else None)
            if f.any():
                fx.append(x_all[f])
                fy.append(np.where(np.isfinite(y[f]), y[f], np.nan))
    if fx:
        # a flagged cell at its stored value; one without a finite value (alakazam stores NaN there) is
        # placed at the foot of the panel by _limits once the panel's valid range is known -- never at
        # 0, which squashed the valid data of an amplitude panel into a strip (review 58b)
        fy = np.concatenate(fy)
        ln, = ax.plot(np.concatenate(fx), fy, "x", color=FLAG_COLOUR, ms=ms + 2, mew=1.2,
                      label=FLAG_LABEL, ls="none", gid=FLAG_GID)
        ln.ak_novalue = ~np.isfinite(fy)


def _ant_names(series: List[Series]) -> List[str]:
    """The antennas of ``series``: the union of their ``ant_names``, in order of first appearance."""
    return list(dict.fromkeys(a for s in series for a in s.ant_names))


def _title(ax, name, series: List[Series]):
    """Antenna ``name``'s panel title: ``<name> (ref)`` in red when it is the reference antenna of any
    of the ``series`` drawn in the panel."""
    if any(s.ref_ant == name for s in series if name in s.ant_names):
        ax.set_title(f"{name} (ref)", color=REF_COLOUR, fontsize=9, fontweight="bold")
        for sp in ax.spines.values():
            sp.set_edgecolor(REF_COLOUR)
    else:
        ax.set_title(name, fontsize=9)


def _draw_spws(ax, series: List[Series], name, what, kind, t0_day, marker_scale=1.0):
    """Draw antenna ``name`` of every one of ``series`` (one or more fields, several SPWs) that has it
    on ``ax``: each (field, SPW) in its own colours and marker (:data:`SPW_COLOURS`,
    :data:`SPW_MARKERS`) and, when there are several, its labels suffixed with the field's name (several
    fields: the overview) and ``spw<S>`` (several SPWs).  The index of a (field, SPW) is its place among
    those of ``series``, so it keeps its colours on every panel and page of the same series.  Each
    field's solutions are lines of their own: two fields observed in turn were drawn in one colour,
    their two lines one zig-zag to the eye (review 58b)."""
    spws = sorted({s.spw for s in series})
    fields = sorted({s.field for s in series})
    styles = sorted({(s.field, s.spw) for s in series})
    for s in series:
        if name in s.ant_names:
            k = styles.index((s.field, s.spw))
            _draw(ax, s, s.ant_names.index(name), what, kind, t0_day, marker_scale=marker_scale,
                  label_suffix=(f" {s.field}" if len(fields) > 1 else "")
                  + (f" spw{s.spw}" if len(spws) > 1 else ""),
                  marker=SPW_MARKERS[k % len(SPW_MARKERS)], spw_index=k)
    _limits(ax)


#: an axis whose values span less than this fraction of their size is drawn as flat
FLAT_SPAN = 1e-5


def _finite(lines):
    ys = [np.asarray(ln.get_ydata(), float) for ln in lines]
    return np.concatenate([v[np.isfinite(v)] for v in ys]) if ys else np.zeros(0)


def _limits(ax):
    """The y range of a panel from its valid (unflagged) values only: a flagged cell's value -- an
    outlier the solve flagged, or a CASA table's stored value -- does not stretch it (a flagged cell is
    drawn at its stored value, outside the range when it lies there); the flagged cells without a finite
    value are put at the foot of the range (they were drawn at 0, which squashed an amplitude panel's
    valid data into a strip: review 58b).  A panel without valid values takes its range from the
    flagged values, and with none of those either its flagged crosses lie on a line at mid-height of
    an axis without tick labels.  A panel whose values are all the same to rounding (a phase-only G's
    amplitudes, 1 in float32) gets a y range of +-1% around them without an offset: matplotlib drew the
    float32 rounding as structure on an axis labelled ``1e-8+1`` (review 57d)."""
    flagged = [ln for ln in ax.get_lines() if ln.get_gid() == FLAG_GID]
    y = _finite([ln for ln in ax.get_lines() if ln.get_gid() != FLAG_GID])
    if not len(y):
        y = _finite(flagged)
    if not len(y):
        if flagged:
            ax.set_ylim(0.0, 1.0)
            ax.tick_params(axis="y", labelleft=False)
            for ln in flagged:
                ln.set_ydata(np.where(ln.ak_novalue, 0.5, np.asarray(ln.get_ydata(), float)))
        return
    lo, hi = float(y.min()), float(y.max())
    mid = 0.5 * (lo + hi)
    if hi - lo <= FLAT_SPAN * abs(mid):
        pad = 0.01 * abs(mid) if mid != 0 else 1.0
        ax.ticklabel_format(axis="y", useOffset=False)
    else:
        pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    for ln in flagged:
        if ln.ak_novalue.any():
            ln.set_ydata(np.where(ln.ak_novalue, lo - 0.5 * pad, np.asarray(ln.get_ydata(), float)))


def _legend_entries(axes) -> dict:
    """{label: handle} of the panels ``axes``, each label once (its first handle), ``flagged`` last."""
    keep = {}
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        for a, b in zip(lab, h):
            keep.setdefault(a, b)
    if FLAG_LABEL in keep:
        keep[FLAG_LABEL] = keep.pop(FLAG_LABEL)
    return keep


def _legend(ax, fontsize, max_rows=None) -> int:
    """The legend of ``ax``, each label once (every SPW's flagged cells share ``flagged``, the last
    entry): inside the axes (``loc='best'``), or with ``max_rows`` to the right of the axes in as many
    columns as keep it to ``max_rows`` rows.  Returns the number of columns outside (0: inside)."""
    keep = _legend_entries([ax])
    if max_rows is None:
        ax.legend(keep.values(), keep.keys(), fontsize=fontsize, loc="best")
        return 0
    ncols = max(1, int(np.ceil(len(keep) / max_rows)))
    ax.legend(keep.values(), keep.keys(), fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0, ncols=ncols)
    return ncols


#: a grid's legend of more entries than this goes to the right of the grid (figure legend): inside the
#: first panel the 64 entries of 32 SPWs collapsed the grid's first row to a strip (review 56a's MS)
GRID_LEGEND_INSIDE = 8


def _grid_legend(fig, axes):
    """The legend of a grid of panels ``axes`` (the labels of all of them, each once: the flagged crosses
    may be in a panel other than the first): inside the first panel while it has at most
    :data:`GRID_LEGEND_INSIDE` entries, else to the right of the grid in as many columns as keep it to
    the page's height, the page wider by them."""
    keep = _legend_entries(axes)
    if not keep:
        return
    if len(keep) <= GRID_LEGEND_INSIDE:
        axes[0].legend(keep.values(), keep.keys(), fontsize=6, loc="best")
        return
    w, hgt = fig.get_size_inches()
    rows = max(GRID_LEGEND_INSIDE, int(hgt * 72 / (6 * 1.9)))        # 6 pt entries, ~1.9 lines each
    ncols = int(np.ceil(len(keep) / rows))
    fig.set_size_inches(w + 1.0 * ncols, hgt)
    fig.legend(keep.values(), keep.keys(), fontsize=6, loc="outside right upper", ncols=ncols)


def _spw_text(spws) -> str:
    """'SPW 3', 'SPW 0~2,5' (CASA's id syntax) for the page titles."""
    spws = sorted(set(spws))
    runs = []
    for x in spws:
        if runs and x == runs[-1][1] + 1:
            runs[-1][1] = x
        else:
            runs.append([x, x])
    return "SPW " + ",".join(str(a) if a == b else f"{a}~{b}" for a, b in runs)


def _xlabel(kind, t0_day):
    if kind == "freq":
        return "frequency (GHz)"
    return f"time (h UTC from MJD {int(round(t0_day / 86400))})"


def _figure(nrows, ncols, w=3.2, h=2.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, w * ncols), max(2.6, h * nrows)), dpi=80, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _panels(kind, jones_type):
    if kind == "delay":
        return ["delay"]
    return ["amp", "phase"]


def antenna_figure(series: List[Series], name: str, t0_day: float):
    """Antenna ``name``'s page of one field: amplitude over phase (or the delay), every one of
    ``series`` (that field's selected SPWs) that has the antenna drawn in it, each SPW in its own
    colours (:func:`_draw_spws`: the same on every antenna's page, also where an SPW lacks the
    antenna).  With several SPWs the legend is to the right of the axes, the page wider by its
    columns (about 8 entries per panel's height in a column: 32 SPWs of a bandpass, 5 columns)."""
    have = [s for s in series if name in s.ant_names]
    s0 = have[0]
    kind = plot_kind(s0.jones_type, len(s0.freq), len(s0.time), s0.delay is not None)
    whats = _panels(kind, s0.jones_type)
    several = len({s.spw for s in series}) > 1
    fig, axes = _figure(len(whats), 1, w=6.0, h=2.6)
    for r, what in enumerate(whats):
        ax = axes[r, 0]
        _draw_spws(ax, series, name, what, kind, t0_day)
        ax.set_ylabel(_ylabel(what, s0))
        ax.grid(alpha=0.3)
        if r == 0:
            _title(ax, name, have)
            ncols = _legend(ax, 7, max_rows=8 * len(whats) if several else None)
            if ncols:
                fig.set_size_inches(fig.get_size_inches()[0] + 1.2 * ncols, fig.get_size_inches()[1])
    axes[-1, 0].set_xlabel(_xlabel(kind, t0_day))
    fig.suptitle(f"{s0.key}  field {s0.field}  {_spw_text(s.spw for s in have)}", fontsize=10)
    return fig


def grid_figure(series: List[Series], what: Optional[str], t0_day: float, title: str):
    """A grid with one panel per antenna (the union over ``series``), every series drawn in it."""
    names = _ant_names(series)
    ncols = int(np.ceil(np.sqrt(len(names))))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = _figure(nrows, ncols)
    s0 = series[0]
    kind = plot_kind(s0.jones_type, len(s0.freq), len(s0.time), s0.delay is not None)
    if what is None:
        # a global per-bin term (CP) is a pure phase
        what = "delay" if kind == "delay" else ("phase" if jterms.get(s0.jones_type).is_global else "amp")
    for k, name in enumerate(names):
        ax = axes[k // ncols, k % ncols]
        _draw_spws(ax, series, name, what, kind, t0_day, marker_scale=0.6)
        _title(ax, name, series)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for k in range(len(names), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    _grid_legend(fig, [axes[k // ncols, k % ncols] for k in range(len(names))])
    fig.supxlabel(_xlabel(kind, t0_day), fontsize=9)
    fig.supylabel(_ylabel(what, s0), fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig


# ---------------------------------------------------------------- files
def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", str(name))


def _wanted_fields(field) -> List[str]:
    return [f.strip() for f in str(field or "").split(",") if f.strip()]


def _wanted_spws(spw) -> Optional[List[int]]:
    """SPW ids of ``spw`` ('0', '0,1', '0~3'); None = all; ParameterError naming spw when unreadable."""
    if spw in ("", None):
        return None
    want = set()
    try:
        for tok in (x.strip() for x in str(spw).split(",") if x.strip()):
            lo, tilde, hi = tok.partition("~")
            if tilde and not (lo.strip() and hi.strip()):       # '0~', '~3': a range needs both ends
                raise ValueError(tok)
            a, b = int(lo), int(hi or lo)
            if b < a:
                raise ValueError(tok)
            want.update(range(a, b + 1))
    except ValueError:
        raise ParameterError({"spw": [f"{spw!r} is not a list of SPW ids (e.g. '0', '0,1' or '0~3')"]}) \
            from None
    return sorted(want)


def _selection_errors(plans, field, spw) -> dict:
    """{parameter: [message]} when a selected field or SPW has solutions in none of the selected keys
    (a field that only some keys have is plotted for those keys)."""
    errors = {}
    keys = ", ".join(k for k, _ in plans)
    want = _wanted_fields(field)
    have = sorted({s.field for _, ss in plans for s in ss})
    missing = [f for f in want if f not in have]
    if missing:
        errors["field"] = [f"{', '.join(missing)} has no solutions in {keys}; fields with solutions: "
                           f"{', '.join(have)}"]
    try:
        spws = _wanted_spws(spw)
    except ParameterError as e:
        return {**errors, **e.errors}
    known = [f for f in want if f in have]           # (a field without solutions is said above)
    have_spw = sorted({s.spw for _, ss in plans for s in ss if not known or s.field in known})
    missing = [x for x in (spws or []) if x not in have_spw]
    if missing:
        errors["spw"] = [f"SPW {', '.join(map(str, missing))} has no solutions in {keys}"
                         + (f" for field {', '.join(known)}" if known else "")
                         + f"; SPWs with solutions: {', '.join(map(str, have_spw))}"]
    return errors


def _select(series, field, spw):
    want, spws = _wanted_fields(field), _wanted_spws(spw)
    return [s for s in series if (not want or s.field in want) and (spws is None or s.spw in spws)]


def outdir_errors(outdir) -> dict:
    if not outdir:
        return {"outdir": ["is required (directory for the PNG files)"]}
    path = os.path.expanduser(str(outdir))
    probe = path
    while probe and not os.path.exists(probe):         # the nearest existing ancestor
        parent = os.path.dirname(probe.rstrip(os.sep))
        probe = parent if parent != probe else ""
    if os.path.exists(path) and not os.path.isdir(path):
        return {"outdir": [f"{outdir!r} exists and is not a directory; expected a directory for the PNG "
                           "files"]}
    from .core.outputs import inside_table_message, table_around

    tab = table_around(path)
    if tab:
        return {"outdir": [inside_table_message(outdir, tab)]}
    if probe and not os.path.isdir(probe):
        return {"outdir": [f"{outdir!r}: {probe!r} is a file, so the directory cannot be created"]}
    if probe and not os.access(probe, os.W_OK):
        return {"outdir": [f"{outdir!r}: {probe!r} is not writable"]}
    return {}


def _plans(table, jones, errors) -> list:
    """[(key, [Series])] of the selected keys; unreadable tables and unknown keys go to ``errors``."""
    from .io import solutions

    try:
        keys = solutions.table_keys(table)
    except (AlakazamError, OSError) as e:
        errors.setdefault("caltable", []).append(str(e).removeprefix("caltable: "))
        return []
    if jones:
        jl = [jones] if isinstance(jones, str) else list(jones)
        chosen = []
        for k in (k for k in jl if str(k).strip()):
            try:
                chosen.append(solutions.resolve_key(table, k))
            except AlakazamError as e:
                errors.setdefault("jones", []).append(str(e))
        keys = chosen or keys           # (unknown keys only: field and spw still checked on all)
    plans = []
    for key in dict.fromkeys(keys):
        try:
            plans.append((key, load_series(solutions.read_term(table, key), key)))
        except AlakazamError as e:
            errors.setdefault("caltable", []).append(str(e))
    return plans


def check_params(table, outdir, jones=None, field="", spw="", iteraxis="antenna") -> dict:
    """{parameter: [message]} for every akplot parameter that cannot work on ``table`` (akplot reports
    them together, before the Begin line): an unreadable table, unknown keys, a field or SPW with no
    solutions in any selected key, an ``outdir`` that is a file or cannot be created."""
    return _checked(table, outdir, jones, field, spw, iteraxis)[0]


def _checked(table, outdir, jones, field, spw, iteraxis):
    """(errors, plans): :func:`check_params`' errors and the keys' series, the table read once."""
    errors = {}
    if iteraxis not in ITERAXES:
        errors["iteraxis"] = [f"{iteraxis!r} is not allowed; expected one of {', '.join(ITERAXES)}"]
    errors.update(outdir_errors(outdir))
    plans = _plans(table, jones, errors)
    if plans:
        for k, v in _selection_errors(plans, field, spw).items():
            errors.setdefault(k, []).extend(v)
        if "outdir" not in errors and os.path.isdir(os.path.expanduser(str(outdir))):
            # each key's pages go to outdir/<key>/: a file of that name was a FileExistsError after Begin
            taken = [k for k, _ in plans if os.path.lexists(os.path.join(os.path.expanduser(str(outdir)), k))
                     and not os.path.isdir(os.path.join(os.path.expanduser(str(outdir)), k))]
            if taken:
                errors["outdir"] = [f"{outdir!r} holds a file named {', '.join(taken)}, where the pages of "
                                    f"{'that key' if len(taken) == 1 else 'those keys'} go (a directory of "
                                    "that name); move it or choose another outdir"]
        if not errors:
            paths = [p for p, _ in _jobs(table, outdir, [(k, _select(v, field, spw)) for k, v in plans],
                                         iteraxis)]
            found = foreign_pages(paths, table)
            if found:
                errors["outdir"] = [foreign_message(outdir, table, found)]
    return errors, plans


#: the PNG text key that names the solution table a page was drawn from (:func:`_save`): akplot
#: replaces a page only when it was drawn from the same table (a page of another table, or a PNG that
#: akplot did not write, is refused: never overwritten unasked)
SOURCE_KEY = "alakazam source table"


def _source_id(table) -> str:
    return os.path.realpath(os.path.expanduser(str(table)))


def page_source(path) -> Optional[str]:
    """The table the PNG at ``path`` names as its source (:data:`SOURCE_KEY`), or None (no such text:
    not written by akplot, or not a PNG)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            v = im.info.get(SOURCE_KEY)
    except Exception:       # noqa: BLE001 -- anything unreadable is not akplot's page
        return None
    return None if v is None else str(v)


def foreign_pages(paths, table) -> list:
    """[(path, source or None)] of the existing files among ``paths`` that were not drawn from
    ``table`` (:func:`page_source`)."""
    src = _source_id(table)
    out = []
    for p in paths:
        if os.path.lexists(p):
            s = page_source(p)
            if s != src:
                out.append((p, s))
    return out


def pages_in(outdir, types=None) -> list:
    """The PNG files where akplot puts the pages of keys of the Jones ``types`` (default all) in
    ``outdir``: ``<key>_overview.png`` and the PNGs of ``<outdir>/<key>/`` (a key like K0, G1, KC0)."""
    d = os.path.expanduser(str(outdir))
    out = []
    if not os.path.isdir(d):
        return out
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        from .io.hdf5 import _KEY_RE         # a solution key (the Jones registry's types)

        m = _KEY_RE.match(name.removesuffix("_overview.png"))
        if m is None or (types is not None and m.group(1) not in types):
            continue
        if name.endswith("_overview.png"):
            out.append(p)
        elif os.path.isdir(p):
            out.extend(os.path.join(p, f) for f in sorted(os.listdir(p)) if f.endswith(".png"))
    return out


def foreign_message(outdir, table, found) -> str:
    """The outdir error for pages a run would replace that were not drawn from ``table``."""
    shown = "; ".join(f"{os.path.relpath(p, os.path.expanduser(str(outdir)))}: "
                      + (f"drawn from {s}" if s else "not written by akplot") for p, s in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return (f"{outdir!r} holds {len(found)} page{'s' if len(found) != 1 else ''} this would replace that "
            f"{'were' if len(found) != 1 else 'was'} not drawn from {str(table)!r} ({shown}{more}); "
            "choose another directory, or move or delete them (akplot replaces only its own pages of "
            "the same table)")


def _save(fig, path, table):
    """Written under a temporary name and renamed: Ctrl-C or an error part-way never leaves a truncated
    PNG (nor half-replaces an existing one).  The PNG names the table it was drawn from
    (:data:`SOURCE_KEY`)."""
    tmp = f"{path}.akpartial.png"
    try:
        fig.savefig(tmp, metadata={"Software": "alakazam akplot", SOURCE_KEY: _source_id(table)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _jobs(table, outdir, plans, iteraxis) -> list:
    """[(path, figure builder)]: the pages of the selected series ``plans`` ([(key, [Series])]), built
    and saved one at a time by :func:`plot_table` (nothing is created here)."""
    jobs = []
    for key, series in plans:
        if not series:
            continue
        t0 = min(float(s.time.min()) for s in series if len(s.time))
        t0_day = np.floor(t0 / 86400.0) * 86400.0
        jobs.append((os.path.join(outdir, f"{key}_overview.png"),
                     lambda series=series, key=key, t0_day=t0_day:
                     grid_figure(series, None, t0_day, f"{key}: {os.path.basename(str(table))}")))
        kdir = os.path.join(outdir, key)
        kind = plot_kind(series[0].jones_type, len(series[0].freq), len(series[0].time),
                         series[0].delay is not None)
        groups: Dict[str, List[Series]] = {}
        for s in series:
            g = f"{_safe(s.field)}_spw{s.spw}" if iteraxis == "spw" else _safe(s.field)
            groups.setdefault(g, []).append(s)
        for g, ss in groups.items():
            if iteraxis == "antenna":       # one page per antenna of the field, its SPWs on it
                for name in _ant_names(ss):
                    jobs.append((os.path.join(kdir, f"{key}_{g}_{_safe(name)}.png"),
                                 lambda ss=ss, name=name, t0_day=t0_day: antenna_figure(ss, name, t0_day)))
                continue
            for what in _panels(kind, ss[0].jones_type):
                suffix = "" if what == "delay" else f"_{what}"
                jobs.append((os.path.join(kdir, f"{key}_{g}{suffix}.png"),
                             lambda ss=ss, what=what, t0_day=t0_day, g=g, key=key:
                             grid_figure(ss, what, t0_day, f"{key}  {g}  {what}")))
    return jobs


def plot_table(table, outdir, jones=None, field="", spw="", iteraxis="antenna", quiet=False) -> List[str]:
    """Write the PNG pages of one solution table (module docstring); returns the files written.

    Parameters
    ----------
    table : str
        HDF5 solution table, or a CASA calibration table (read through alakazam.io.casatable).
    outdir : str
        Output directory (created if missing).
    jones : list of str or str, optional
        Keys to plot (fuzzy: 'g0', 'G' when unique); default every key.
    field, spw : str
        Comma-separated field names / SPW ids to plot; default all.
    iteraxis : 'antenna' | 'spw' | 'field'
    quiet : bool
        No progress bar.
    """
    from . import progress

    errors, plans = _checked(table, outdir, jones, field, spw, iteraxis)
    if errors:
        raise ParameterError(errors)
    plans = [(key, _select(series, field, spw)) for key, series in plans]
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise AlakazamError(f"outdir: {outdir!r} cannot be created ({e.strerror})") from None
    for key, series in plans:           # what cannot be drawn and is not flagged: said once per key
        n = sum(nonfinite_count(x) for x in series)
        if n:
            from .io.hdf5 import nonfinite_message

            total = sum(x.flags.shape[0] * x.flags.shape[1] * x.flags.shape[2] for x in series)
            log.warning(nonfinite_message(table, key, n, total, what="cannot be drawn (panels without "
                                          "points or crosses there)"))
    jobs = _jobs(table, outdir, plans, iteraxis)
    for d in sorted({os.path.dirname(p) for p, _ in jobs}):
        os.makedirs(d, exist_ok=True)
    written = []
    with progress.bar("akplot: pages", len(jobs), quiet=quiet) as pbar:
        for path, build in jobs:
            written.append(_save(build(), path, table))
            pbar.advance()
    log.info("akplot: wrote %d PNG files to %s", len(written), outdir)
    return written
