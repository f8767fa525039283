"""``alakazam`` command line: run, flag, flagmanager, info, plot, export, measures, fluxscale-info,
simulate, demo.

Errors a user can cause (bad config, missing file, unknown field ...) print one clean message and exit
with status 2; ``--debug`` shows the traceback instead.  Any other failure (casacore's RuntimeError,
an internal error) is one line with status 1, also without a traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys

from . import __version__
from .errors import AlakazamError


def _setup_logging(quiet=False, logfile=None):
    """Log to stderr through rich (the same Console as the progress bars, so log lines print above a
    live bar); ``quiet``: warnings and errors only, and no progress bars; ``logfile``: also write every
    INFO line there (even with ``quiet``), with time stamps."""
    from rich.logging import RichHandler

    from . import progress

    progress.set_quiet(quiet)
    level = logging.WARNING if quiet else logging.INFO
    console = RichHandler(console=progress.console(), show_path=False, show_time=False, markup=False,
                          rich_tracebacks=False)
    console.setLevel(level)
    console.addFilter(progress.not_file_only)     # (akflag's summary: printed already)
    handlers = [console]
    if logfile:
        from . import tasklog

        try:
            tasklog.check_log_file(logfile)     # (appended to: only a new or empty file or an earlier log)
            handlers.append(tasklog.file_handler(logfile))
        except AlakazamError as e:
            raise AlakazamError(f"--log: {e}") from None
        except OSError as e:
            raise AlakazamError(f"--log: cannot write {logfile!r} ({e.strerror})") from None
    logging.basicConfig(level=logging.INFO if logfile else level, format="%(message)s", handlers=handlers,
                        force=True)


def cmd_run(args):
    from alakazam.caltasks.yamlrun import run_yaml

    # a re-run of the file first puts FLAG back to the flags this run started from (core/runjournal.py)
    args.interrupt_message = (
        "alakazam: interrupted (solution files are only ever replaced whole; the blocks that finished are "
        "kept, and plot pages drawn so far stay, each whole; when its flag or apply blocks wrote FLAG, a "
        "re-run of this file first puts FLAG back to the flags before this run, so that its flag blocks do "
        "not flag again on top of their own flags and its solves do not read the apply's flags; an apply "
        "block interrupted while writing FLAG is finished by the re-run: its flags are those of the "
        "solutions)")

    run_yaml(args.config, workers=getattr(args, "workers", None), scheduler=getattr(args, "scheduler", None),
             plots=getattr(args, "plots", None))


def cmd_info(args):
    from alakazam.caltasks import akinfo

    from .core.listobs import path_kind

    if path_kind(args.caltable) == "ms":
        akinfo(vis=args.caltable)
    else:                       # an alakazam HDF5 table or a CASA caltable: the solution summary
        akinfo(caltable=args.caltable, fluxscale=False)


def cmd_recover(args):
    """Finish the clean-up of an apply that did not (a kill -9): the recovery of core/columns.py (a
    partial column dropped, a table that no longer opens put back) and WEIGHT put back from the copy
    an unfinished calwt apply saved (core/weightbackup.py).  What the next apply does first anyway."""
    from .core import columns, locks, ms_io, weightbackup

    ms = args.vis
    # looked at before check_ms, whose recover_killed may already put a cut table back (then: recovered)
    was = bool(ms) and (weightbackup.pending(ms) or os.path.isdir(os.path.join(str(ms), columns.SNAPSHOT)))
    ms_io.check_ms(ms)
    if not os.path.isdir(str(ms)):
        raise AlakazamError(f"vis: {ms} is not a Measurement Set (no such directory)")
    with locks.writer_lock(ms, "ms"):
        columns.recover(ms)
    print(f"{ms}: " + ("recovered (see the log above)" if was else "nothing to recover"))
    from .calibration import flagsafety

    flagsafety.warn_interrupted(ms)     # FLAG writes cut short are restored with flagmanager (told)


def cmd_fluxscale_info(args):
    from alakazam.caltasks import akinfo

    akinfo(caltable=args.caltable, fluxscale=True)


def cmd_plot(args):
    from alakazam.caltasks import akplot

    # plots._save writes each page under a temporary name and renames it whole
    args.interrupt_message = ("alakazam: interrupted (the pages drawn so far stay, each whole; nothing else "
                              "was written; a re-run draws them again)")
    r = akplot(caltable=args.caltable, jones=args.jones, field=args.field, spw=args.spw,
               iteraxis=args.iteraxis, outdir=args.outdir)
    print(f"wrote {len(r['files'])} PNG files to {args.outdir}")


def cmd_export(args):
    from alakazam.caltasks import akexport

    # io/casatable.export writes under a hidden temporary name next to the output and renames it whole
    args.interrupt_message = (
        "alakazam: interrupted (the CASA table is written under a hidden temporary name and renamed only "
        "when complete: nothing was written at the output path, and the temporary was removed; the "
        "solution table is only read)")

    r = akexport(caltable=args.caltable, jones=args.key, casatable=args.out, vis=args.vis,
                 crossphase=args.crossphase)
    print(f"wrote {r['path']} ({r['VisCal']}, {r['n_rows']} rows) from {args.caltable}:{r['key']}")


def cmd_measures(args):
    from . import measures_data

    if args.source and not args.update:
        raise AlakazamError("measures: --from needs --update")
    st = measures_data.update(args.source) if args.update else measures_data.status()
    print(f"measures data used: {st['directory'] or 'casacore default'} ({st['source']})")
    if st["tai_utc_date"]:
        print(f"TAI_UTC table of {st['tai_utc_date']} ({st['age_days']} days old"
              f"{'; older than 180 days: run alakazam measures --update' if st['stale'] else ''})")
    for label, d, date in st["candidates"]:
        print(f"  found: {label}: {d} ({date})")
    print(f"private folder: {st['private_dir']}")


def cmd_simulate(args):
    from .sim import simulate_ms
    from .sim.simulate import hazard_kwargs, simulate_interrupted

    def error(msg):
        raise AlakazamError(msg)

    try:
        t = simulate_ms(args.out, n_ant=args.n_ant, n_chan=tuple(args.n_chan), feed=args.feed, seed=args.seed,
                        duration_h=args.hours, int_s=args.int_s, noise=args.noise, rfi=args.rfi,
                        overwrite=args.overwrite, **hazard_kwargs(args, error))
    except KeyboardInterrupt as e:  # main's message: about this MS, not solution files or plot pages
        args.interrupt_message = simulate_interrupted(args.out, getattr(e, "simulate_complete", None))
        raise
    except ValueError as e:         # simulate_ms's parameter checks (before anything is written)
        msg = str(e)
        for name, opt in (("dead_antenna_scan", "--dead-antenna"), ("rfi_persistent", "--rfi-persistent"),
                          ("feed", "--feed")):
            if msg.startswith(name):
                msg = opt + msg[len(name):]
        raise AlakazamError(msg) from None
    print(f"wrote {t.ms} ({len(t.ant_names)} active antennas, SPWs {list(t.spw_freqs)}, "
          f"{len(t.times)} integrations, {t.feed} feeds); truth in {t.ms}.truth.npz")


def cmd_demo(args):
    from .demo import run_demo

    run_demo(args.dir, feed=args.feed, backend=args.backend, overwrite=args.overwrite)


class LogOnce(argparse.Action):
    """``--log FILE`` (before or after the subcommand) given once: a second ``--log`` naming another file
    is an error naming both (argparse would keep the last one without a word, and the log the user
    looks for would not be written).  The same file twice (``a.log``, ``./a.log``) is one.  ``seen``:
    the files of the current parse, shared by the parser's ``--log`` options and emptied when the
    top-level parser starts a parse (:class:`_Parser`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def __call__(self, parser, namespace, values, option_string=None):
        if self.seen and os.path.abspath(values) not in {os.path.abspath(v) for v in self.seen}:
            parser.error(f"--log given twice ({self.seen[0]!r} and {values!r}): one log file per run")
        self.seen.append(values)
        setattr(namespace, self.dest, values)


class _Parser(argparse.ArgumentParser):
    """The top-level parser: each parse starts with no ``--log`` seen (:class:`LogOnce`), so one parser
    parses several command lines."""

    log_seen = None

    def parse_known_args(self, args=None, namespace=None):
        if self.log_seen is not None:
            self.log_seen.clear()
        return super().parse_known_args(args, namespace)


#: what argparse takes for a negative number (a value, not an option): its own '-5', '-.5', '-0.5', and
#: also scientific notation ('-1e9', '-2.5E-3'), which Python < 3.13's pattern reads as an option
#: (a review: ``alakazam flag --mode shadow --tolerance -1e9`` failed with 'expected one argument')
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _negative_numbers(parser):
    """Every parser of ``parser``'s tree reads a negative number in scientific notation as a value."""
    todo = [parser]
    while todo:
        p = todo.pop()
        p._negative_number_matcher = _NEGATIVE_NUMBER
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                todo.extend(a.choices.values())


def _share_log_seen(parser):
    """Every ``--log`` of ``parser`` and its subcommands records into one list, the parser's."""
    parser.log_seen = []
    todo = [parser]
    while todo:
        p = todo.pop()
        for a in p._actions:
            if isinstance(a, LogOnce):
                a.seen = parser.log_seen
            elif isinstance(a, argparse._SubParsersAction):
                todo.extend(a.choices.values())


def build_parser():
    p = _Parser(prog="alakazam", description="Radio-interferometric calibration")
    p.add_argument("--version", action="version", version=f"alakazam {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only, no progress bars")
    p.add_argument("--log", default=None, metavar="FILE", action=LogOnce, help="also write the log to FILE")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("run", help="run solve -> fluxscale -> apply blocks of a YAML file")
    s.add_argument("config", help="YAML file (flag, solve, fluxscale, apply blocks); relative paths in it "
                   "are read from its folder")
    # also accepted after the subcommand (alakazam run --quiet --log run.log cfg.yaml)
    s.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="warnings and errors only, no progress bars")
    s.add_argument("--log", default=argparse.SUPPRESS, metavar="FILE", action=LogOnce,
                   help="also write the log to FILE")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="solve, apply and flag on a dask LocalCluster of N worker processes "
                        "(blocks may set their own)")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="solve, apply and flag on a running dask scheduler, e.g. tcp://host:8786")
    s.add_argument("--plots", default=None, metavar="DIR",
                   help="solution plots of every solve block (without its own plots: key) into DIR; "
                        "with several such blocks, DIR/<output table name>/ each (cal.h5: DIR/cal)")
    s.set_defaults(func=cmd_run)
    from .cli_flag import add_parsers as _add_flag_parsers

    _add_flag_parsers(sub)
    s = sub.add_parser("recover", help="finish the clean-up of an apply that was killed (partial column, "
                       "WEIGHT of calwt put back); the next apply does it first anyway")
    s.add_argument("--vis", required=True, help="Measurement Set")
    s.set_defaults(func=cmd_recover)
    s = sub.add_parser("info", help="summarise a solution table, or a Measurement Set (listobs)")
    s.add_argument("caltable", metavar="PATH",
                   help="HDF5 solution table or Measurement Set (told by content)")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("plot", help="PNG plots of a solution table (the akplot task)")
    s.add_argument("caltable")
    s.add_argument("--jones", nargs="+", default=[], metavar="KEY", help="keys to plot (default all)")
    s.add_argument("--field", default="", help="comma-separated fields (default all)")
    s.add_argument("--spw", default="", help="comma-separated SPW ids (default all)")
    s.add_argument("--iteraxis", choices=["antenna", "spw", "field"], default="antenna")
    s.add_argument("--outdir", default=_xml_default("akplot", "outdir"), metavar="DIR",
                   help="directory for the PNG files (default %(default)s, akplot's)")
    s.set_defaults(func=cmd_plot)
    s = sub.add_parser("export", help="export one key as a CASA calibration table (the akexport task)")
    s.add_argument("caltable")
    s.add_argument("key")
    s.add_argument("out")
    s.add_argument("--vis", default="", help="the MS of the solutions (default: the one recorded)")
    s.add_argument("--crossphase", default="", help="D only: CP key to fold in ('' = from the chain, none)")
    s.set_defaults(func=cmd_export)
    s = sub.add_parser("measures", help="show (or --update) the measures data casacore uses")
    s.add_argument("--update", action="store_true", help="copy current data into alakazam's private folder")
    s.add_argument("--from", dest="source", default=None, metavar="DIR",
                   help="measures folder with geodetic/ (default: the installed casadata package)")
    s.set_defaults(func=cmd_measures)
    s = sub.add_parser("fluxscale-info", help="print fluxscale factors and derived fluxes")
    s.add_argument("caltable")
    s.set_defaults(func=cmd_fluxscale_info)
    s = sub.add_parser("simulate", help="write a simulated MS with known Jones terms (+ OUT.truth.npz)")
    s.add_argument("out")
    s.add_argument("--n-ant", type=int, default=6,
                   help="antennas with data (default 6; the ANTENNA table has 2 more, without data)")
    s.add_argument("--n-chan", type=int, nargs="+", default=[16, 8], help="channels per SPW (default 16 8)")
    s.add_argument("--feed", choices=["linear", "circular"], default="linear")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--hours", type=float, default=3.0, help="observation length in hours (default 3)")
    s.add_argument("--int-s", type=float, default=60.0, help="integration time in s (default 60)")
    s.add_argument("--noise", type=float, default=0.01, help="Jy per real/imag part")
    s.add_argument("--rfi", action="store_true",
                   help="strong spikes in one channel of some rows, unflagged")
    s.add_argument("--overwrite", action="store_true",
                   help="replace OUT when it is an MS written by alakazam simulate (nothing else is "
                   "replaced)")
    from .sim.simulate import add_hazard_arguments
    add_hazard_arguments(s)
    s.set_defaults(func=cmd_simulate)
    s = sub.add_parser("demo", help="simulate, solve, fluxscale, apply; print recovered vs true")
    s.add_argument("--dir", default="alakazam_demo", help="folder of demo.ms, cal.h5, cal_scaled.h5 and "
                   "demo.log (default alakazam_demo)")
    s.add_argument("--feed", choices=["linear", "circular"], default="linear")
    s.add_argument("--backend", default="numba", help="solver backend: numba (default), ceres, jax, scipy")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an earlier demo's demo.ms, cal.h5 and cal_scaled.h5 in --dir")
    s.set_defaults(func=cmd_demo)
    for s in sub.choices.values():      # the global options also after the subcommand
        have = {a.dest for a in s._actions}
        if "debug" not in have:
            s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        if "quiet" not in have:
            s.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                           help="warnings and errors only, no progress bars")
        if "log" not in have:
            s.add_argument("--log", default=argparse.SUPPRESS, metavar="FILE", action=LogOnce,
                           help="also write the log to FILE")
    _share_log_seen(p)
    _negative_numbers(p)
    return p


def _xml_default(task, name):
    """The default of parameter ``name`` of ``task`` in tasks_xml (one place for it)."""
    import importlib

    mod = importlib.import_module(f"alakazam.caltasks.{task}")
    return next(p.default for p in getattr(mod, task).spec.params if p.name == name)


def main(argv=None):
    from . import progress

    args = build_parser().parse_args(argv)
    if argv is None:        # the process's own command (console script, python -m): its exit follows
        from . import exitgc

        exitgc.register()
    try:
        _setup_logging(args.quiet, args.log)
    except AlakazamError as e:
        print(f"alakazam: error: {e}", file=sys.stderr)
        return 2
    prev_term = None
    if threading_main():
        # SIGTERM ends a run like Ctrl-C: temporaries removed, partial columns dropped, FLAG restore told
        prev_term = signal.signal(signal.SIGTERM, _term_to_interrupt)
    try:
        args.func(args)
    except AlakazamError as e:
        if args.debug:
            raise
        _error(f"alakazam: error: {e}")
        return 2
    except OSError as e:
        if args.debug:
            raise
        what = f": {e.filename!r}" if getattr(e, "filename", None) else ""
        _error(f"alakazam: error: {e.strerror or e}{what}")
        return 2
    except KeyboardInterrupt:
        from .io import hdf5

        hdf5.remove_interrupted()       # a temporary the interrupt left where no handler ran
        if args.debug:
            raise
        _error(getattr(args, "interrupt_message", None) or
               "alakazam: interrupted (solution files are only ever replaced whole; the blocks that finished "
               "are kept, and plot pages drawn so far stay, each whole: a re-run draws them again)")
        return 130
    except Exception as e:          # noqa: BLE001 -- no traceback without --debug (casacore: RuntimeError)
        if args.debug:
            raise
        what = "casacore" if isinstance(e, RuntimeError) else f"internal error ({type(e).__name__})"
        msg = " ".join(str(e).split())
        _error(f"alakazam: error: {what}: {msg} (--debug shows the traceback)")
        return 1
    finally:
        progress.set_quiet(False)       # --quiet is for this command only (main may be called in-process)
        if prev_term is not None:
            signal.signal(signal.SIGTERM, prev_term)
    return 0


def _error(msg):
    """``msg`` on stderr and, with ``--log FILE``, in FILE too (a run's log tells how it ended)."""
    from .tasklog import to_files

    print(msg, file=sys.stderr)
    to_files(msg.removeprefix("alakazam: "))


def _term_to_interrupt(signum, frame):
    raise KeyboardInterrupt


def threading_main():
    import threading

    return threading.current_thread() is threading.main_thread()


def entry():
    """The console script ``alakazam``: :func:`main`'s exit status.  Under ``--debug`` main re-raises
    (the traceback is shown); the status is then the one without ``--debug``: 2 for a parameter, input
    or file error, 130 for Ctrl-C, 1 for anything else (it was 1 for all of them)."""
    import traceback

    try:
        code = main()
    except (AlakazamError, OSError):
        traceback.print_exc()
        code = 2
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    entry()
