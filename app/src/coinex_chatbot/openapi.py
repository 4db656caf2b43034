"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json.

A test compares its paths and methods with the Flask routes, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .config import Settings
from .language import LANGUAGES

_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
_LANG = {"type": "string", "enum": list(LANGUAGES)}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}
        }
    return response


_BAD_INPUT = {
    "400": _error("Malformed JSON, invalid UTF-8, or invalid fields"),
    "413": _error(f"Body over {Settings.max_body_bytes // 1024} KiB"),
    "415": _error("A body that is not application/json"),
    "429": _error("Rate limit reached", retry_after=True),
    "503": _error("Redis unavailable", retry_after=True),
}
_UNAUTHORIZED = {
    "401": {
        **_error("No token, or not this conversation's token"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    }
}
_TOKEN_REQUIRED = [{"conversationToken": []}]
_IDEMPOTENCY_PARAM = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: one key per message the user typed (a random UUID, say). "
    "A later post with the same key in the same conversation, within the conversation's time to "
    "live, stores and enqueues nothing and answers 202 with the first message's id and current "
    "status, and the header Idempotent-Replayed: true. Retry with the same key after a 503, a "
    "timeout or a lost connection.",
    "schema": {"type": "string", "pattern": "^[\\x20-\\x7e]{1,128}$"},
}
_CONVERSATION_PARAM = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": _ID,
}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CoinEx customer-service chatbot API",
            "version": __version__,
            "description": "Ask a question; a worker answers it from the help centre or escalates "
            "it to a human agent. Answers are fetched by polling the conversation's messages.",
        },
        "paths": {
            "/api/v1/conversations": {
                "post": {
                    "operationId": "createConversation",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewConversation"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json("Conversation", "Conversation created"),
                        **_BAD_INPUT,
                    },
                }
            },
            "/api/v1/conversations/{conversation_id}/messages": {
                "parameters": [_CONVERSATION_PARAM],
                "post": {
                    "operationId": "postMessage",
                    "security": _TOKEN_REQUIRED,
                    "parameters": [_IDEMPOTENCY_PARAM],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewMessage"}
                            }
                        },
                    },
                    "responses": {
                        "202": {
                            **_json("Accepted", "Queued for a worker to answer, or a replay"),
                            "headers": {
                                "Idempotent-Replayed": {
                                    "schema": {"const": "true"},
                                    "description": "Present when the Idempotency-Key named an "
                                    "earlier message: its id and status are returned",
                                }
                            },
                        },
                        **_UNAUTHORIZED,
                        "404": _error("Unknown conversation"),
                        **_BAD_INPUT,
                        "400": _error(
                            "Malformed JSON, invalid UTF-8, invalid fields, or an "
                            "Idempotency-Key that is not 1 to 128 printable ASCII characters"
                        ),
                        "409": _error(
                            "The message first posted with this Idempotency-Key has just "
                            "expired; retry",
                            retry_after=True,
                        ),
                        "422": _error("The Idempotency-Key was used for another text"),
                        "503": _error(
                            "Redis unavailable, or the message is not yet on a replica "
                            "(CHATBOT_REDIS_WAIT_REPLICAS); retry with the same Idempotency-Key",
                            retry_after=True,
                        ),
                    },
                },
                "get": {
                    "operationId": "listMessages",
                    "security": _TOKEN_REQUIRED,
                    "responses": {
                        "200": _json("MessageList", "The conversation's messages"),
                        **_UNAUTHORIZED,
                        "404": _error("Unknown conversation"),
                        "503": _error("Redis unavailable", retry_after=True),
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "responses": {"200": _json("Status", "The process is alive")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "responses": {
                        "200": _json("Status", "Redis reachable and knowledge base loaded"),
                        "503": _json("Status", "Not ready (the log says why)"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "This document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/": {
                "get": {
                    "operationId": "chatPage",
                    "parameters": [
                        {"name": "lang", "in": "query", "required": False, "schema": _LANG}
                    ],
                    "responses": {
                        "200": {
                            "description": "The customer chat page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "conversationToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token that createConversation returned with the id",
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "detail"],
                    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
                },
                "NewConversation": {"type": "object", "properties": {"lang": _LANG}},
                "Conversation": {
                    "type": "object",
                    "required": ["conversation_id", "token"],
                    "properties": {
                        "conversation_id": _ID,
                        "token": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    },
                },
                "NewMessage": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": Settings.max_text_chars,
                        },
                        "lang": _LANG,
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["message_id", "status"],
                    "properties": {
                        "message_id": _ID,
                        "status": {"enum": ["pending", "answered", "escalated"]},
                    },
                },
                "Message": {
                    "type": "object",
                    "required": ["message_id", "text", "status"],
                    "properties": {
                        "message_id": _ID,
                        "text": {"type": "string"},
                        "lang": {"type": "string"},
                        "status": {"enum": ["pending", "answered", "escalated"]},
                        "answer": {"type": ["string", "null"]},
                        "articles": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "title": {"type": "string"},
                                },
                            },
                        },
                        "confidence": {"type": ["number", "null"]},
                        "created_at": {"type": "number"},
                        "answered_at": {"type": ["number", "null"]},
                    },
                },
                "MessageList": {
                    "type": "object",
                    "required": ["conversation_id", "messages"],
                    "properties": {
                        "conversation_id": _ID,
                        "messages": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Message"},
                        },
                    },
                },
                "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
            },
        },
    }
