"""CASA-style tasks: ``akcal``, ``akfluxscale``, ``akapply``, ``akinfo``, ``akflag``, ``akflagmanager``,
``akplot``, ``akexport``.

    from alakazam.caltasks import akcal
    akcal(vis='cal.ms', caltable='cal.h5', jones=['K', 'G'], field='3C286', solint=['scan', '2min'])

Every parameter is defined once, in ``tasks_xml/<task>.xml``.
"""

from .akapply import akapply
from .akcal import akcal
from .akflag import akflag
from .akflagmanager import akflagmanager
from .akexport import akexport
from .akfluxscale import akfluxscale
from .akinfo import akinfo
from .akplot import akplot

TASKS = {t.name: t for t in (akcal, akfluxscale, akapply, akinfo, akflag, akflagmanager, akplot, akexport)}

__all__ = ["akcal", "akfluxscale", "akapply", "akinfo", "akflag", "akflagmanager", "akplot", "akexport",
           "TASKS"]
