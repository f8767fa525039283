"""``alakazam`` command line: run, info, fluxscale-info, simulate, demo.

Errors a user can cause (bad config, missing file, unknown field ...) print one clean message and exit
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
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
    handlers = [console]
    if logfile:
        fh = logging.FileHandler(logfile)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.setLevel(logging.INFO)
        handlers.append(fh)
    logging.basicConfig(level=logging.INFO if logfile else level, format="%(message)s", handlers=handlers,
                        force=True)


def cmd_run(args):
    from alakazam.caltasks.yamlrun import run_yaml

    run_yaml(args.config)


def cmd_info(args):
    from alakazam.caltasks import akinfo

    akinfo(caltable=args.caltable, fluxscale=False)


def cmd_fluxscale_info(args):
    from alakazam.caltasks import akinfo

    akinfo(caltable=args.caltable, fluxscale=True)


def cmd_simulate(args):
    from .sim import simulate_ms
    from .sim.simulate import hazard_kwargs

    def error(msg):
        raise AlakazamError(msg)

    t = simulate_ms(args.out, n_ant=args.n_ant, n_chan=tuple(args.n_chan), feed=args.feed, seed=args.seed,
                    duration_h=args.hours, int_s=args.int_s, noise=args.noise, rfi=args.rfi,
                    **hazard_kwargs(args, error))
    print(f"wrote {t.ms} ({len(t.ant_names)} active antennas, SPWs {list(t.spw_freqs)}, "
          f"{len(t.times)} integrations, {t.feed} feeds); truth in {t.ms}.truth.npz")


def cmd_demo(args):
    from .demo import run_demo

    run_demo(args.dir, feed=args.feed, backend=args.backend)


def build_parser():
    p = argparse.ArgumentParser(prog="alakazam", description="Radio-interferometric calibration")
    p.add_argument("--version", action="version", version=f"alakazam {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only, no progress bars")
    p.add_argument("--log", default=None, metavar="FILE", help="also write the log to FILE")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("run", help="run solve -> fluxscale -> apply blocks of a YAML file")
    s.add_argument("config")
    # also accepted after the subcommand (alakazam run --quiet --log run.log cfg.yaml)
    s.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="warnings and errors only, no progress bars")
    s.add_argument("--log", default=argparse.SUPPRESS, metavar="FILE", help="also write the log to FILE")
    s.set_defaults(func=cmd_run)
    s = sub.add_parser("info", help="print a solution-table summary")
    s.add_argument("caltable")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("fluxscale-info", help="print fluxscale factors and derived fluxes")
    s.add_argument("caltable")
    s.set_defaults(func=cmd_fluxscale_info)
    s = sub.add_parser("simulate", help="write a simulated MS with known Jones terms (+ OUT.truth.npz)")
    s.add_argument("out")
    s.add_argument("--n-ant", type=int, default=6)
    s.add_argument("--n-chan", type=int, nargs="+", default=[16, 8], help="channels per SPW")
    s.add_argument("--feed", choices=["linear", "circular"], default="linear")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--hours", type=float, default=3.0)
    s.add_argument("--int-s", type=float, default=60.0)
    s.add_argument("--noise", type=float, default=0.01, help="Jy per real/imag part")
    s.add_argument("--rfi", action="store_true")
    from .sim.simulate import add_hazard_arguments
    add_hazard_arguments(s)
    s.set_defaults(func=cmd_simulate)
    s = sub.add_parser("demo", help="simulate, solve, fluxscale, apply; print recovered vs true")
    s.add_argument("--dir", default="alakazam_demo")
    s.add_argument("--feed", choices=["linear", "circular"], default="linear")
    s.add_argument("--backend", default="numba")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv=None):
    from . import progress

    args = build_parser().parse_args(argv)
    _setup_logging(args.quiet, args.log)
    try:
        args.func(args)
    except AlakazamError as e:
        if args.debug:
            raise
        print(f"alakazam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("alakazam: interrupted (solution files are only ever replaced whole)", file=sys.stderr)
        return 130
    finally:
        progress.set_quiet(False)       # --quiet is for this command only (main may be called in-process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
