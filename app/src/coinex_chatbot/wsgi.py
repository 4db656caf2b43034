"""WSGI entry point: ``coinex_chatbot.wsgi:application`` (uWSGI ``module=``, gunicorn)."""

from .web import create_app

application = create_app()
