"""Flagging engine (CASA flagdata's modes for alakazam); knows nothing of tasks.

    from alakazam.flagging import FlagConfig, run_flag
    run_flag(FlagConfig(ms='x.ms', mode='aoflagger', strategy='jvla'))

One module per mode: :mod:`.manual`, :mod:`.unflag`, :mod:`.clip`, :mod:`.quack`, :mod:`.shadow`,
:mod:`.elevation`, :mod:`.extend`, :mod:`.aoflagger`, :mod:`.mad`, :mod:`.summary`.
Each exposes ``flag_piece(piece, cfg, state)``
returning the new flags of the selected samples of a :class:`~alakazam.flagging.engine.Piece` (whole
baselines of one DATA_DESC_ID and scan), optionally ``start(cfg, sel)`` / ``finish(cfg, sel, state)``,
and ``NEEDS_DATA`` when it reads the data column.  Selection, I/O, flag versions and FLAG writes are
the engine's (:mod:`.engine`).

Import cost: ``run_flag`` (the engine: I/O, flag versions, memory planning, psutil) is imported on
first use (PEP 562 ``__getattr__``), not with the package: the package is imported by every task
(``alakazam.caltasks.akflag`` reads :mod:`.config` at import) and by the YAML schema, so a solve +
apply that never flags paid ~0.03-0.05 s of imports for it (issue 16, the QuartiCal-style job).
``from alakazam.flagging import run_flag`` works as before.
"""

from .config import MODES, FlagConfig, flag_config_from_dict

__all__ = ["FlagConfig", "MODES", "flag_config_from_dict", "run_flag"]


def __getattr__(name):
    if name == "run_flag":
        from .engine import run_flag

        globals()["run_flag"] = run_flag
        return run_flag
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["FlagConfig", "MODES", "flag_config_from_dict", "run_flag"]
