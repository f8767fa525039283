"""YAML runner: ``alakazam run config.yaml`` executes solve -> fluxscale -> apply blocks in order.

Every block is validated (all errors, named by YAML path such as ``solve[0].time_interval[2]``) before
the first block runs, so a typo in the apply block does not cost a solve.
"""

from __future__ import annotations

import logging
import os

from .config import load_run_config

log = logging.getLogger("alakazam.run")


def run_yaml(path) -> dict:
    from .calibration.apply import run_apply
    from .calibration.fluxscale import run_fluxscale
    from .flow import run_solve

    cfg = load_run_config(path)
    base = os.path.dirname(os.path.abspath(path))
    out = {"solve": [], "fluxscale": [], "apply": []}
    cwd = os.getcwd()
    os.chdir(base)           # relative paths in the YAML are relative to the YAML file
    try:
        for i, b in enumerate(cfg.solve):
            log.info("solve[%d]: %s -> %s (%s)", i, b.ms, b.output, ", ".join(s.key for s in b.steps))
            out["solve"].append(run_solve(b))
        for i, b in enumerate(cfg.fluxscale):
            log.info("fluxscale[%d]: %s -> %s", i, b.reference_table, b.output)
            out["fluxscale"].append(run_fluxscale(b))
        for i, b in enumerate(cfg.apply):
            log.info("apply[%d]: %s -> %s", i, b.ms, b.output_col)
            out["apply"].append(run_apply(b))
    finally:
        os.chdir(cwd)
    return out
