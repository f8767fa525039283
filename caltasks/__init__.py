"""CASA-style tasks: ``akcal``, ``akfluxscale``, ``akapply``, ``akinfo``, ``akflag``, ``akflagmanager``.

    from alakazam.caltasks import akcal
    akcal(vis='cal.ms', caltable='cal.h5', jones=['K', 'G'], field='3C286', solint=['scan', '2min'])

Every parameter is defined once, in ``tasks_xml/<task>.xml``.
"""

from .akapply import akapply
from .akcal import akcal
from .akflag import akflag
from .akflagmanager import akflagmanager
from .akfluxscale import akfluxscale
from .akinfo import akinfo

TASKS = {t.name: t for t in (akcal, akfluxscale, akapply, akinfo, akflag, akflagmanager)}

__all__ = ["akcal", "akfluxscale", "akapply", "akinfo", "akflag", "akflagmanager", "TASKS"]
