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


def test_the_conversation_token_is_documented():
    from coinex_chatbot.openapi import openapi_document

    doc = openapi_document()
    scheme = doc["components"]["securitySchemes"]["conversationToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "token" in doc["components"]["schemas"]["Conversation"]["required"]
    for operation in doc["paths"]["/api/v1/conversations/{conversation_id}/messages"].values():
        if isinstance(operation, dict) and "responses" in operation:
            assert operation["security"] == [{"conversationToken": []}]
            assert "401" in operation["responses"]
    for path, item in doc["paths"].items():  # every POST with a body may answer 415
        if "post" in item:
            assert "415" in item["post"]["responses"], path
