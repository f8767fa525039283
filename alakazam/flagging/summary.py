"""mode='summary': flagged fractions of the selected samples, shaped like flagdata's summary dict.

Returned dict::

    {'name': 'Summary', 'type': 'summary', 'flagged': F, 'total': N,
     'antenna': {name: {'flagged': f, 'total': n}, ...},     # a baseline's samples count for both antennas
     'spw': {'0': {...}}, 'spw:channel': {'0:12': {...}}, 'field': {'3C286': {...}},
     'scan': {'1': {...}}, 'correlation': {'XX': {...}}}

(every count is a number of (row, channel, correlation) samples; an auto-correlation counts once for its
antenna).  The table printed on the terminal lists the same, with percentages.  FLAG is never written.
"""

from collections import defaultdict

import numpy as np


def start(cfg, sel):
    return {"meta": sel.meta, "acc": defaultdict(lambda: defaultdict(lambda: np.zeros(2, np.int64)))}


def flag_piece(piece, cfg, state):
    acc, meta = state["acc"], state["meta"]
    f = piece.flag
    per_row_f = f.sum(axis=(1, 2))
    per_row_n = np.full(len(f), f.shape[1] * f.shape[2])
    acc["all"]["all"] += [per_row_f.sum(), per_row_n.sum()]
    for a in np.unique(np.concatenate([piece.ant1, piece.ant2])):
        m = (piece.ant1 == a) | (piece.ant2 == a)
        acc["antenna"][meta.ant_names[a]] += [per_row_f[m].sum(), per_row_n[m].sum()]
    acc["spw"][str(piece.spw_id)] += [per_row_f.sum(), per_row_n.sum()]
    for fid in np.unique(piece.field_id):
        m = piece.field_id == fid
        acc["field"][meta.fields[fid].name] += [per_row_f[m].sum(), per_row_n[m].sum()]
    acc["scan"][str(piece.scan)] += [per_row_f.sum(), per_row_n.sum()]
    fc = f.sum(axis=(0, 2))
    for k, ch in enumerate(piece.chans):
        acc["spw:channel"][f"{piece.spw_id}:{int(ch)}"] += [fc[k], len(f) * f.shape[2]]
    fp = f.sum(axis=(0, 1))
    for k, c in enumerate(piece.corr_types):
        acc["correlation"][c] += [fp[k], len(f) * f.shape[1]]
    return None


def _key(k):
    try:
        return (0, int(k))
    except ValueError:
        if ":" in k:
            a, b = k.split(":")
            return (0, int(a), int(b))
        return (1, k)


def finish(cfg, sel, state):
    acc = state["acc"]
    tot = acc["all"]["all"] if "all" in acc else np.zeros(2, np.int64)
    out = {"name": "Summary", "type": "summary", "flagged": int(tot[0]), "total": int(tot[1])}
    for cat in ("antenna", "spw", "spw:channel", "field", "scan", "correlation"):
        items = acc.get(cat, {})
        order = sorted(items, key=_key) if cat != "antenna" else \
            [n for n in sel.meta.ant_names if n in items]
        out[cat] = {k: {"flagged": int(items[k][0]), "total": int(items[k][1])} for k in order}
    # the summary is the result asked for, not progress: printed whatever --quiet or a block's quiet
    # say (they turn progress bars off), and logged, so `--log FILE` keeps it (review 53a: with --quiet
    # a YAML run's summary went nowhere)
    print_summary(out)
    log_summary(out)
    return out


def log_summary(s):
    """The summary at INFO for the log file of a run (``file_only``: the CLI's terminal handler skips
    it, the tables are on the terminal already): the totals, then one line per category."""
    import logging

    lg = logging.getLogger("alakazam.flag")
    only = {"file_only": True}
    pct = lambda f, n: f"{100.0 * f / n:.2f}%" if n else "-"     # noqa: E731
    lg.info("akflag summary: %d of %d selected samples flagged (%s)", s["flagged"], s["total"],
            pct(s["flagged"], s["total"]), extra=only)
    for cat in ("antenna", "spw", "field", "scan", "correlation"):
        items = s.get(cat) or {}
        if items:
            lg.info("akflag summary by %s: %s", cat, ", ".join(
                f"{k} {pct(v['flagged'], v['total'])}" for k, v in items.items()), extra=only)


#: the per-channel table is printed up to this many channels (CASA's summary leaves channels out
#: unless spwchan=True); the returned dict always has every channel
MAX_PRINTED_CHANNELS = 64


def print_summary(s):
    """The summary as rich tables on the terminal (stdout)."""
    import sys

    from rich.console import Console
    from rich.table import Table

    con = Console() if sys.stdout.isatty() else Console(width=120)
    pct = lambda f, n: f"{100.0 * f / n:.2f}%" if n else "-"     # noqa: E731
    con.print(f"akflag summary: {s['flagged']} of {s['total']} selected samples flagged "
              f"({pct(s['flagged'], s['total'])})")
    for cat in ("antenna", "spw", "field", "scan", "correlation", "spw:channel"):
        items = s.get(cat) or {}
        if not items:
            continue
        if cat == "spw:channel" and len(items) > MAX_PRINTED_CHANNELS:
            con.print(f"flagged by spw:channel: {len(items)} channels, not printed (in the returned "
                      "dict's 'spw:channel')")
            continue
        tb = Table(title=f"flagged by {cat}", title_justify="left")
        tb.add_column(cat)
        tb.add_column("flagged", justify="right")
        tb.add_column("total", justify="right")
        tb.add_column("fraction", justify="right")
        for k, v in items.items():
            tb.add_row(k, str(v["flagged"]), str(v["total"]), pct(v["flagged"], v["total"]))
        con.print(tb)
