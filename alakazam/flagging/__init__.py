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
"""

from .config import MODES, FlagConfig, flag_config_from_dict
from .engine import run_flag

__all__ = ["FlagConfig", "MODES", "flag_config_from_dict", "run_flag"]
