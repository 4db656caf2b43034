"""/openapi.json must describe exactly the routes the app has."""

from __future__ import annotations

import re

import pytest

from coinex_chatbot.config import load_settings

pytestmark = pytest.mark.usefixtures("app_env")


def test_openapi_matches_routes(app_env):
    from coinex_chatbot.web import create_app

    app = create_app(load_settings(app_env))
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule).replace(
            "{cid}", "{conversation_id}"
        )
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    doc = app.test_client().get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == routes
