"""The app for uWSGI (``--module uwsgi_freeze:application``), then ``gc.freeze()``.

Without ``lazy-apps`` uWSGI imports this in the master, so the freeze happens before the workers
are forked: the objects made by the import leave the GC's generations and the workers' collections
no longer write to (and un-share) their pages. With ``lazy-apps`` (the role's setting, needed for
chain reload) the master imports nothing of the app: each worker imports this after its fork and
the freeze only spares its own collections the work. Used by bench/memory.py.
"""

import gc

from coinex_chatbot.wsgi import application

gc.freeze()

__all__ = ["application"]
