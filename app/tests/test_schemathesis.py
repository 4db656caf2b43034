"""Property-based input from the OpenAPI document against real uWSGI: never a 5xx, errors are JSON.

The schema is the one /openapi.json serves (test_openapi.py checks that it matches the routes);
requests go over HTTP to the live uWSGI stack. Bounded and deterministic: derandomize=True.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from coinex_chatbot.openapi import openapi_document
from coinex_chatbot.web import conversation_token

pytestmark = pytest.mark.e2e

schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_errors_are_json(case, live_stack):
    cid = str((case.path_parameters or {}).get("conversation_id", ""))
    if case.headers and "Authorization" in case.headers and re.fullmatch("[0-9a-f]{32}", cid):
        # the generated id's own token, so that the body gets checked too, not only the token
        token = conversation_token(live_stack.env["SECRET_KEY"], cid)
        case.headers["Authorization"] = f"Bearer {token}"
    response = case.call(base_url=live_stack.base_url, timeout=10)
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "detail"}, where
