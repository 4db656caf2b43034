"""The app's libraries, imported by the uWSGI master before it forks (``shared-import``), then
``gc.freeze()``; the app itself stays lazy (``lazy-apps``: each worker imports it after the fork).

The workers share the master's pages of Flask, Werkzeug, Jinja2, redis-py, Dramatiq and
prometheus_client instead of importing each its own copy, and a chain reload still loads the
app's new code in every new worker. Not its libraries: those stay the master's until the server
restarts, so this holds only for releases with the same app/requirements.lock. Used by
bench/memory.py (configurations *-uwsgi-libs).
"""

import gc

import dramatiq
import dramatiq.brokers.redis  # noqa: F401
import flask
import flask.json  # noqa: F401
import jinja2  # noqa: F401
import prometheus_client  # noqa: F401
import redis
import redis.asyncio  # noqa: F401
import werkzeug
import werkzeug.middleware.proxy_fix  # noqa: F401

gc.freeze()
