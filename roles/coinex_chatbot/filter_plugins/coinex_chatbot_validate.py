"""Checks of the coinex_chatbot role's variables that its argument specs cannot express.

tasks/validate.yml asserts that `values | coinex_chatbot_invalid(mode, ws_choice)` is empty:

- values: variable name -> value of every variable CHECKS names (the names come from
  `query('ansible.builtin.varnames', '^coinex_chatbot_') | coinex_chatbot_checked`);
- mode: coinex_chatbot_mode (argument specs have checked it);
- ws_choice: the WS in effect, {value, source, name} (vars/main.yml __coinex_chatbot_ws_choice),
  and by_mode: coinex_chatbot_ws_by_mode (checked when given).

It returns one message per bad variable, each naming it, in CHECKS order; secrets are never shown
(a Redis URL is shown with its user:password part masked). CHECKS is the one table of the checks
and of the role's own ranges. The ranges of the app's settings are not copied here: they come from
the app's own validator, <coinex_chatbot_app_src>/src/coinex_chatbot/config.py (integer_ranges(),
number_ranges()), loaded by path: it imports only the standard library, so even a release whose
package does not import is validated.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

APP_CONFIG = "src/coinex_chatbot/config.py"  # relative to coinex_chatbot_app_src
WS_RANGE = (1, 64)
WS_HINT = " (WS from the {}; -e ws=N wins over WS=N, which wins over coinex_chatbot_ws)"

NAME_RE = r"[a-z_][a-z0-9_-]{0,31}"
ADDRESS_RE = (  # IPv4, IPv6 (loosely), or a host name with at least one letter or -
    r"(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}"
    r"|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*"
    r"|(?=[A-Za-z0-9.-]*[A-Za-z-])[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?"
)
# redis[s]://[[user]:password@]host[:port][/db][?options], or unix:///path/to.sock[?options]
REDIS_URL_RE = (
    r"rediss?://(?:[^@/]*@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?(?:/[0-9]{0,5})?(?:\?[^#]*)?"
    r"|unix:///[^?#@]+(?:\?[^#]*)?"
)
ENV_NAME_RE = r"[A-Za-z_][A-Za-z0-9_]*"
SENTINEL_RE = (
    r"([A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):"
    r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
)


def _truncate(text: str, length: int) -> str:
    """Jinja's truncate(length): cut at a word boundary, with 5 characters of leeway."""
    if len(text) <= length + 5:
        return text
    return text[: length - 3].rsplit(" ", 1)[0] + "..."


def _shown(value: object, length: int = 80) -> str:
    return json.dumps(_truncate(str(value), length))


def _number_text(number: float) -> str:
    """1.0 -> "1", 0.5 -> "0.5", 10000 -> "10000"."""
    return str(int(number)) if float(number).is_integer() else str(number)


def _as_int(value: object) -> int | None:
    """An int, or a string of digits (-e k=v gives strings); not a boolean, not "2.5"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return None


def _as_number(value: object) -> float | None:
    """A number that is not a boolean, or a string like 0.35 or .5."""
    if isinstance(value, Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]*[.]?[0-9]+", value):
        return float(value)
    return None


def _matches(pattern: str, value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


@dataclass
class Context:
    """What the checks see besides the value they check."""

    values: Mapping[str, Any]
    mode: str
    # the app's ranges by kind ("integer", "number"), or why they could not be read
    app_ranges: dict[str, Mapping[str, tuple[float, float]]] = field(default_factory=dict)
    app_error: str = ""

    @property
    def redis_url(self) -> object:
        return self.values["coinex_chatbot_redis_url"]

    def redis_url_match(self) -> re.Match[str] | None:
        url = self.redis_url
        match = re.fullmatch(REDIS_URL_RE, url) if isinstance(url, str) else None
        if match is None or not 1 <= int(match["port"] or 6379) <= 65535:
            return None
        return match

    def loopback_redis(self) -> tuple[int, str] | None:
        """The port of the Redis this host talks to on loopback, which uWSGI must not take, and
        where it comes from; None when that Redis is elsewhere (or its port is invalid)."""
        if self.redis_url == "":
            if self.mode == "local":
                port = _as_int(self.values["coinex_chatbot_local_redis_port"])
                return None if port is None else (port, "coinex_chatbot_local_redis_port")
            return 6379, "production mode's own Redis"
        match = self.redis_url_match()
        if match is None or not match["host"]:
            return None
        host = match["host"]
        if host in ("localhost", "[::1]") or host.startswith("127."):
            return int(match["port"] or 6379), "coinex_chatbot_redis_url"
        return None


# A check gets the value, its argument in CHECKS and the context; it returns what is wrong
# (the message after the variable's name) or None.
Check = Callable[..., str | None]


def integer(
    value: object, bounds: tuple[int, int] | str, ctx: Context, hint: str = ""
) -> str | None:
    """bounds: (min, max), or the name of the app setting whose range config.py gives."""
    if isinstance(bounds, str):
        if ctx.app_error:
            return None  # reported once, on coinex_chatbot_app_src
        bounds = ctx.app_ranges["integer"][bounds]
    low, high = bounds
    number = _as_int(value)
    if number is not None and low <= number <= high:
        return None
    return (
        f"must be an integer from {_number_text(low)} to {_number_text(high)}{hint},"
        f" got {_shown(value, 60)}"
    )


def number(value: object, setting: str, ctx: Context) -> str | None:
    """A number within the range config.py gives the app setting `setting`."""
    if ctx.app_error:
        return None
    low, high = ctx.app_ranges["number"][setting]
    got = _as_number(value)
    if got is not None and low <= got <= high:
        return None
    return f"must be a number from {_number_text(low)} to {_number_text(high)}, got {_shown(value)}"


def _path_ok(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.startswith("/")
        and value.rstrip("/") != ""
        and ".." not in value.split("/")
    )


def path(value: object, _: None, ctx: Context) -> str | None:
    if _path_ok(value):
        return None
    return f"must be an absolute path (not /, no '..', no ~), got {_shown(value, 60)}"


def app_source(value: object, _: None, ctx: Context) -> str | None:
    """An absolute path whose config.py gave the app's ranges."""
    if not _path_ok(value):
        return path(value, None, ctx)
    if ctx.app_error:
        return (
            f"must be the app's source directory, whose {APP_CONFIG} gives the ranges of its"
            f" settings ({ctx.app_error}), got {_shown(value)}"
        )
    return None


def matches(value: object, rule: tuple[str, str], ctx: Context) -> str | None:
    """rule: (regular expression the whole value must match, what it must be)."""
    pattern, wanted = rule
    if _matches(pattern, value):
        return None
    return f"must be {wanted}, got {_shown(value)}"


def user(value: object, _: None, ctx: Context) -> str | None:
    if _matches(NAME_RE, value) and value != "root":
        return None
    return (
        "must be a user name ([a-z_][a-z0-9_-]*, at most 32 characters) other than root,"
        f" got {_shown(value)}"
    )


def ws_by_mode(value: object, _: None, ctx: Context) -> str | None:
    """{local: N, production: N}, each an integer in WS_RANGE."""
    low, high = WS_RANGE
    if isinstance(value, Mapping) and all(
        (number := _as_int(value.get(mode))) is not None and low <= number <= high
        for mode in ("local", "production")
    ):
        return None
    return (
        f"must map local and production to an integer from {low} to {high} each"
        f" (the WS default per mode), got {_shown(value, 60)}"
    )


def rollback_release(value: object, _: None, ctx: Context) -> str | None:
    if _matches(r"[A-Za-z0-9._-]*", value) and value not in (".", ".."):
        return None
    return (
        f"must be a release directory name (letters, digits, . _ -) or empty, got {_shown(value)}"
    )


def health_question(value: object, _: None, ctx: Context) -> str | None:
    if isinstance(value, str) and value.strip():
        return None
    return f"must be a non-empty question, got {_shown(value)}"


def ld_preload(value: object, _: None, ctx: Context) -> str | None:
    if isinstance(value, list | tuple) and all(
        isinstance(item, str) and item.startswith("/") for item in value
    ):
        return None
    return f"must be a list of absolute paths, got {_shown(value)}"


def extra_env(value: object, _: None, ctx: Context) -> str | None:
    if isinstance(value, Mapping) and all(
        _matches(ENV_NAME_RE, str(name)) and _scalar(item) for name, item in value.items()
    ):
        return None
    return (
        "must map environment variable names ([A-Za-z_][A-Za-z0-9_]*) to scalar values,"
        f" got {_shown(value)}"
    )


def _scalar(item: object) -> bool:
    return isinstance(item, str) or not isinstance(item, Iterable)


def redis_url(value: object, _: None, ctx: Context) -> str | None:
    if value == "" or ctx.redis_url_match() is not None:
        return None
    # user:password masked: everything between the scheme and the last @
    masked = re.sub(r"^([^:/]*://)?.*@", r"\1***@", str(value), flags=re.S)
    return (
        "must be empty (the role runs Redis on the host) or look like"
        " redis[s]://[:password@]host[:port 1-65535][/db] or unix:///path/to.sock,"
        f" got {_shown(masked)}"
    )


def port_clash(value: object, _: None, ctx: Context) -> str | None:
    """The http port is not the port of the Redis on this host."""
    redis = ctx.loopback_redis()
    if redis is None or _as_int(value) != redis[0]:
        return None
    port, source = redis
    return (
        f"clashes with the port of the Redis on this host ({source}, {port}):"
        f" uWSGI and Redis cannot share a port, got {_shown(value)}"
    )


def local_uwsgi_port(value: object, _: None, ctx: Context) -> str | None:
    """Local mode only (production has no local haproxy): a port, neither the http port (the
    local haproxy's) nor Redis's."""
    if ctx.mode != "local" or integer(ctx.values["coinex_chatbot_http_port"], (1, 65535), ctx):
        return None  # a bad http port is reported on its own (the default here derives from it)
    wrong = integer(value, (1, 65535), ctx)
    port = _as_int(value)
    if wrong or port is None:
        return wrong
    if port == _as_int(ctx.values["coinex_chatbot_http_port"]):
        return (
            "clashes with coinex_chatbot_http_port, which the local haproxy holds in front of"
            f" uWSGI: give uWSGI another port, got {_shown(value)}"
        )
    redis = ctx.loopback_redis()
    if redis is not None and port == redis[0]:
        return (
            f"clashes with the port of the Redis on this host ({redis[1]}, {port}):"
            f" uWSGI and Redis cannot share a port, got {_shown(value)}"
        )
    return None


# Secrets: what is wrong is said, the value never shown.
def secret_key(value: object, _: None, ctx: Context) -> str | None:
    if isinstance(value, str) and (ctx.mode == "local" or len(value) >= 16):
        return None
    return (
        "must be a string; in production mode it is required, at least 16 characters"
        " (keep it in a vault)"
    )


def redis_password(value: object, _: None, ctx: Context) -> str | None:
    if isinstance(value, str) and (ctx.mode == "local" or ctx.redis_url != "" or len(value) >= 16):
        return None
    return (
        "must be a string; required (at least 16 characters, vaulted) when production mode"
        " runs its own Redis"
    )


def redis_app_password(value: object, _: None, ctx: Context) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if ctx.mode == "local" or ctx.redis_url != "" or value == "":
        return None  # empty: derived from coinex_chatbot_redis_password (vars/production.yml)
    if len(value) < 16:
        return "must be empty (derived) or at least 16 characters (vaulted)"
    if value == ctx.values["coinex_chatbot_redis_password"]:
        return "must differ from coinex_chatbot_redis_password (the default user's, every command)"
    return None


def redis_sentinels(value: object, _: None, ctx: Context) -> str | None:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        return f"must be a list of host:port strings, got {_shown(value)}"
    bad = [item for item in value if not _matches(SENTINEL_RE, item)]
    if bad:
        return (
            f"must be host:port strings, got {_shown(bad)} (with 3 or more `redis` hosts each needs"
            " coinex_chatbot_private_address, or its facts gathered in the same run)"
        )
    return None


def redis_sentinel_password(value: object, _: None, ctx: Context) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if ctx.values["coinex_chatbot_redis_sentinels"] and len(value) < 16:
        return (
            "required with Sentinels (coinex_chatbot_redis_sentinels): at least 16 characters,"
            " vaulted"
        )
    return None


V = "coinex_chatbot_"
# Every check, in report order: (variable, check, argument). An integer's argument is its range,
# or the app setting (environment variable) whose range the app's config.py gives; WS comes first
# (WS_RANGE). A variable may have more than one check.
CHECKS: tuple[tuple[str, Check, Any], ...] = (
    (V + "http_port", integer, (1, 65535)),
    (V + "local_redis_port", integer, (1, 65535)),
    (V + "keep_releases", integer, (1, 100)),
    (V + "uwsgi_processes", integer, (1, 256)),
    (V + "uwsgi_threads", integer, (1, 64)),
    (V + "uwsgi_harakiri", integer, (1, 3600)),
    (V + "uwsgi_max_requests", integer, (1, 100_000_000)),
    (V + "uwsgi_max_requests_delta", integer, (0, 1_000_000)),
    (V + "uwsgi_max_worker_lifetime", integer, (1, 31_536_000)),
    (V + "uwsgi_reload_on_rss", integer, (16, 1_048_576)),
    (V + "uwsgi_worker_reload_mercy", integer, (1, 3600)),
    (V + "uwsgi_listen", integer, (1, 65535)),
    (V + "task_threads", integer, (1, 64)),
    (V + "task_shutdown_timeout_ms", integer, (1000, 3_600_000)),
    (V + "health_timeout", integer, (1, 3600)),
    # the app's settings (vars/main.yml __coinex_chatbot_env): ranges from the app's config.py
    (V + "rate_limit_conversation", integer, "CHATBOT_RATE_LIMIT_CONVERSATION"),
    (V + "rate_limit_ip", integer, "CHATBOT_RATE_LIMIT_IP"),
    (V + "trusted_proxies", integer, "CHATBOT_TRUSTED_PROXIES"),
    (V + "data_ttl_seconds", integer, "CHATBOT_DATA_TTL_SECONDS"),
    (V + "broker_heartbeat_timeout_ms", integer, "CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS"),
    (V + "broker_maintenance_chance", integer, "CHATBOT_BROKER_MAINTENANCE_CHANCE"),
    (V + "escalation_maxlen", integer, "CHATBOT_ESCALATION_MAXLEN"),
    (V + "base_dir", path, None),
    (V + "python", path, None),
    (V + "app_src", app_source, None),
    (V + "requirements_lock", path, None),
    (V + "controller_cache_dir", path, None),
    (V + "controller_python", path, None),
    (V + "user", user, None),
    (V + "group", matches, (NAME_RE, "a group name ([a-z_][a-z0-9_-]*, at most 32 characters)")),
    (V + "http_address", matches, (ADDRESS_RE, "an IPv4 or IPv6 address or a host name")),
    (V + "confidence_threshold", number, "CHATBOT_CONFIDENCE_THRESHOLD"),
    (V + "ld_preload", ld_preload, None),
    (V + "extra_env", extra_env, None),
    (V + "health_question", health_question, None),
    (
        V + "health_expected_article",
        matches,
        (
            r"[a-z0-9][a-z0-9-]*",
            "a knowledge-base article id (lowercase letters, digits and -), e.g. 2fa-lost-reset",
        ),
    ),
    (V + "local_supervisor_version", matches, (r"[0-9]+([.][0-9]+)*", "a version like 4.3.0")),
    (V + "uv_version", matches, (r"[0-9]+([.][0-9]+)*", "a version like 0.13.9")),
    (V + "rollback_release", rollback_release, None),
    (
        V + "local_redis_maxmemory",
        matches,
        (r"[1-9][0-9]*([KkMmGg][Bb]?)?", "a Redis memory size above 0 like 256mb or 1gb"),
    ),
    (V + "redis_url", redis_url, None),
    (V + "http_port", port_clash, None),
    (V + "local_uwsgi_port", local_uwsgi_port, None),
    (V + "secret_key", secret_key, None),
    (V + "redis_password", redis_password, None),
    (V + "redis_app_password", redis_app_password, None),
    (V + "redis_sentinels", redis_sentinels, None),
    (V + "redis_sentinel_port", integer, (1, 65535)),
    (
        V + "redis_master_name",
        matches,
        (r"[A-Za-z0-9._-]{1,64}", "a Sentinel master name (letters, digits, . _ -)"),
    ),
    (V + "redis_sentinel_password", redis_sentinel_password, None),
    (V + "redis_wait_replicas", integer, "CHATBOT_REDIS_WAIT_REPLICAS"),
    (V + "redis_wait_timeout_ms", integer, "CHATBOT_REDIS_WAIT_TIMEOUT_MS"),
)
CHECKED = tuple(dict.fromkeys(name for name, _, _ in CHECKS))


def load_app_ranges(app_src: str) -> dict[str, Mapping[str, tuple[float, float]]]:
    """integer_ranges() and number_ranges() of the app's config.py, loaded by path."""
    config = Path(app_src) / APP_CONFIG
    name = "_coinex_chatbot_app_config"
    spec = importlib.util.spec_from_file_location(name, config)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {config}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return {"integer": module.integer_ranges(), "number": module.number_ranges()}


def _context(values: Mapping[str, Any], mode: str) -> Context:
    ctx = Context(values, mode)
    app_src = values[V + "app_src"]
    if not _path_ok(app_src):
        ctx.app_error = "not a path"  # the path check names it
        return ctx
    try:
        ranges = load_app_ranges(app_src)
    except Exception as error:  # any failure of the app's file is reported
        ctx.app_error = f"{type(error).__name__}: {_truncate(str(error), 120)}"
        return ctx
    kinds = {integer: "integer", number: "number"}
    missing = [
        setting
        for _, check, setting in CHECKS
        if isinstance(setting, str) and setting not in ranges[kinds[check]]
    ]
    if missing:
        ctx.app_error = f"it has no range for {', '.join(missing)}"
    else:
        ctx.app_ranges = ranges
    return ctx


def coinex_chatbot_invalid(
    values: Mapping[str, Any], mode: str, ws_choice: Mapping[str, Any]
) -> list[str]:
    """One message per bad variable ([] when all are valid); see the module's docstring."""
    missing = [name for name in CHECKED if name not in values]
    if missing:
        raise AnsibleFilterError(f"coinex_chatbot_invalid: no value for {', '.join(missing)}")
    ctx = _context(values, mode)
    errors: list[str] = []
    ws = integer(ws_choice["value"], WS_RANGE, ctx, WS_HINT.format(ws_choice["source"]))
    if ws:
        errors.append(f"{ws_choice['name']} {ws}")
    # the WS default per mode, when validate.yml passes it with the choice (type-free in the
    # argument specs, so a bad one is this one line, not a dump of the specs); not named twice
    by_mode = ws_choice.get("by_mode")
    problem = by_mode is not None and ws_by_mode(by_mode, None, ctx)
    if problem and not (ws and str(ws_choice["name"]).startswith(V + "ws_by_mode")):
        errors.append(f"{V}ws_by_mode {problem}")
    for name, check, argument in CHECKS:
        problem = check(values[name], argument, ctx)
        if problem:
            errors.append(f"{name} {problem}")
    return errors


def coinex_chatbot_checked(defined: Iterable[str]) -> list[str]:
    """The variables CHECKS checks, each of which must be among `defined` (variable names)."""
    missing = sorted(set(CHECKED) - set(defined))
    if missing:
        raise AnsibleFilterError(f"coinex_chatbot_checked: not defined: {', '.join(missing)}")
    return list(CHECKED)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., list[str]]]:
        return {
            "coinex_chatbot_invalid": coinex_chatbot_invalid,
            "coinex_chatbot_checked": coinex_chatbot_checked,
        }
