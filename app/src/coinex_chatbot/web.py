"""Flask app factory: the chat API, the chat page, health, metrics and the OpenAPI document."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any

import redis
from flask import Flask, Response, g, jsonify, render_template, request
from flask.sessions import SessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import metrics
from .config import Settings
from .corpus import article_count
from .language import LANGUAGES, detect_language
from .logs import log_event, setup_logging
from .openapi import openapi_document
from .runtime import get_runtime
from .store import RateLimitResult, is_valid_id, new_id

log = logging.getLogger("coinex_chatbot.web")

REDIS_RETRY_AFTER = 5
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,128}")  # printable ASCII
# on every response: the chat page loads only its own files (no inline script or style), no
# page may frame it, browsers do not guess content types, and no URL leaks out as a referrer
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# the Prometheus `method` label: any other method string counts as "other"
METRIC_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})


class NoSessions(SessionInterface):
    """The app keeps no Flask session (conversations carry their own token): nothing to open or
    sign per request. Flask's default would build a signing serializer on every request."""

    def open_session(self, app: Flask, request: object) -> None:
        return None  # Flask then uses a NullSession, which refuses writes

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        return None


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after
        self.headers = headers or {}


def _error_response(
    status: int,
    error: str,
    detail: str,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(error=error, detail=detail)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    response.headers.update(headers or {})
    return response


def conversation_token(secret_key: str, cid: str) -> str:
    """The bearer token of a conversation: HMAC-SHA256 of its id, keyed with SECRET_KEY."""
    return hmac.new(secret_key.encode(), cid.encode(), hashlib.sha256).hexdigest()


def _json_body(max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError that says what is wrong with it."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "body_too_large", f"the request body is over {max_bytes} bytes")
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise ApiError(413, "body_too_large", f"the request body is over {max_bytes} bytes")
    if not raw.strip():
        return {}
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "the body must be application/json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "invalid_encoding", f"the body is not valid UTF-8 ({exc.reason})"
        ) from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from None
    except ValueError:  # an integer over Python's int-string conversion limit
        raise ApiError(400, "malformed_json", "a number in the body has too many digits") from None
    # a \ud800-style escape decodes to a lone surrogate, which no UTF-8 text can hold; only a
    # \u escape can make one (the strict UTF-8 decoding above refuses encoded surrogates)
    try:
        if "\\u" in text:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            400, "invalid_encoding", "the body has a lone surrogate (\\ud800-\\udfff) in a string"
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the body must be a JSON object")
    return body


def _idempotency_key() -> str | None:
    """The request's Idempotency-Key: None without one; printable ASCII, 1 to 128 characters."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{IDEMPOTENCY_HEADER} must be 1 to 128 printable ASCII characters",
        )
    return key


def _lang(body: dict[str, Any]) -> str | None:
    lang = body.get("lang")
    if lang is None:
        return None
    if not isinstance(lang, str) or lang not in LANGUAGES:
        raise ApiError(400, "invalid_lang", f"lang must be {' or '.join(map(repr, LANGUAGES))}")
    return str(lang)


def create_app(settings: Settings | None = None) -> Flask:
    """The app on the process's runtime for ``settings`` (default: the environment's)."""
    runtime = get_runtime(settings)
    settings, store, broker = runtime.settings, runtime.store, runtime.broker
    setup_logging(settings.log_level)
    from .tasks import answer_message  # declared on the same runtime's broker

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.session_interface = NoSessions()
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    articles = article_count()  # the corpus is read (and validated) before serving

    def authorize(cid: str) -> None:
        """The request must carry the conversation's token (``Authorization: Bearer ...``)."""
        if not is_valid_id(cid):  # no token is valid for it: the id is the problem
            raise ApiError(404, "unknown_conversation", f"no conversation with id {cid!r}")
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "missing_token",
                "send the conversation's token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        expected = conversation_token(settings.secret_key, cid)
        if not hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode()):
            raise ApiError(
                401,
                "invalid_token",
                "the token is not this conversation's",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    def require_conversation(cid: str) -> None:
        if not store.conversation_exists(cid):
            raise ApiError(404, "unknown_conversation", f"no conversation with id {cid!r}")

    def rate_limit(scopes: list[tuple[str, int]]) -> None:
        refuse_if_limited(store.hit_rate_limits(scopes))

    def refuse_if_limited(result: RateLimitResult) -> None:
        if not result.allowed:
            metrics.RATE_LIMITED.labels(result.scope).inc()
            raise ApiError(
                429,
                "rate_limited",
                f"too many messages ({result.scope} limit); retry in {result.retry_after} s",
                result.retry_after,
            )

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        # the route, never the path: paths hold conversation ids
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        method = request.method if request.method in METRIC_METHODS else "other"
        metrics.http_request(method, endpoint, response.status_code, elapsed)
        log_event(
            log,
            "request",
            method=method,
            route=endpoint,
            status=response.status_code,
            latency_ms=round(elapsed * 1000, 2),
            remote=request.remote_addr,
        )
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return _error_response(exc.status, exc.error, exc.detail, exc.retry_after, exc.headers)

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError) -> Response:
        metrics.REDIS_ERRORS.inc()
        log.warning("redis unavailable: %s", exc)
        return _error_response(
            503,
            "service_unavailable",
            "the message store is unavailable; please retry",
            REDIS_RETRY_AFTER,
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 413:
            return _error_response(
                413, "body_too_large", f"the request body is over {settings.max_body_bytes} bytes"
            )
        name = (exc.name or "error").lower().replace(" ", "_")
        return _error_response(code, name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _error_response(500, "internal_error", "an unexpected error occurred")

    @app.get("/")
    def chat_page() -> str:
        lang = request.args.get("lang")
        return render_template("index.html", lang=lang if lang in LANGUAGES else None)

    @app.post("/api/v1/conversations")
    def create_conversation() -> tuple[Response, int]:
        body = _json_body(settings.max_body_bytes)
        lang = _lang(body)
        rate_limit([(f"ip:{request.remote_addr}", settings.rate_limit_ip)])
        cid = store.create_conversation(lang)
        return jsonify(conversation_id=cid, token=conversation_token(settings.secret_key, cid)), 201

    @app.post("/api/v1/conversations/<cid>/messages")
    def post_message(cid: str) -> tuple[Response, int, dict[str, str]]:
        authorize(cid)
        key = _idempotency_key()
        body = _json_body(settings.max_body_bytes)
        text = body.get("text")
        if text is None:
            raise ApiError(400, "missing_text", "the body needs a 'text' field")
        if not isinstance(text, str):
            raise ApiError(400, "invalid_text", "'text' must be a string")
        text = text.strip()
        if not text:
            raise ApiError(400, "empty_text", "'text' must not be empty")
        if len(text) > settings.max_text_chars:
            raise ApiError(
                400, "text_too_long", f"'text' is over {settings.max_text_chars} characters"
            )
        lang = _lang(body) or detect_language(text)
        limits = [
            (f"conversation:{cid}", settings.rate_limit_conversation),
            (f"ip:{request.remote_addr}", settings.rate_limit_ip),
        ]
        mid = new_id()
        # the message and its task are stored by one script, in one step (Store.post_message)
        task = broker.scripted_enqueue(answer_message.message(mid))
        posted = store.post_message(cid, text, lang, key, limits, mid=mid, task=task)
        if not posted.found:
            raise ApiError(404, "unknown_conversation", f"no conversation with id {cid!r}")
        refuse_if_limited(posted.limit)
        added = posted.added
        assert added is not None  # found and not limited: the message is added
        mid, status, replay = added.message_id, added.status or "pending", not added.created
        if replay and added.status is None:  # its key outlived it by a moment
            raise ApiError(
                409,
                "idempotency_conflict",
                "the message first posted with this Idempotency-Key has just expired; retry",
                REDIS_RETRY_AFTER,
            )
        if replay and added.text != text:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for another text in this conversation",
            )
        if not replay:
            broker.scripted_enqueued(task)
            metrics.MESSAGES_ENQUEUED.inc()
        if settings.redis_wait_replicas:
            require_replicas(mid, replay)
        headers = {"Idempotent-Replayed": "true"} if replay else {}
        return jsonify(message_id=mid, status=status), 202, headers

    def require_replicas(mid: str, replay: bool) -> None:
        """A 202 means the message and its task survive the primary's loss (WAIT)."""
        wanted, timeout = settings.redis_wait_replicas, settings.redis_wait_timeout_ms
        if store.wait_for_replicas(mid, wanted, timeout, replay) < wanted:
            log.warning("message %s: fewer than %d replicas after %d ms", mid, wanted, timeout)
            raise ApiError(
                503,
                "not_replicated",
                "the message is stored but not yet on a replica; retry with the same "
                "Idempotency-Key",
                REDIS_RETRY_AFTER,
            )

    @app.get("/api/v1/conversations/<cid>/messages")
    def list_messages(cid: str) -> Response:
        authorize(cid)
        require_conversation(cid)
        return jsonify(conversation_id=cid, messages=store.list_messages(cid))

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> Response:
        problems = []
        try:
            store.ping()
        except redis.RedisError as exc:
            problems.append(f"redis unreachable: {exc}")
        if articles == 0:
            problems.append("knowledge base is empty")
        if problems:  # the detail names Redis's host and port: for the log only
            log.warning("not ready: %s", "; ".join(problems))
            response = jsonify(status="not ready")
            response.status_code = 503
            response.headers["Retry-After"] = str(REDIS_RETRY_AFTER)
            return response
        return jsonify(status="ready", articles=articles)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        data, content_type = metrics.render()
        return Response(data, content_type=content_type)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(openapi_document())

    return app
