"""Redis data model: conversations, messages, rate limits and escalation tickets.

Keys are listed in docs/architecture.md. Completing a message is one Lua script that acts only
while the message is still pending, so a redelivered task can neither answer twice nor open a
second escalation ticket. Adding a message under an Idempotency-Key is one Lua script too: the
key is claimed with SET NX and the message stored in the same step, so of any number of posts
with one key (concurrent or retried) exactly one stores a message.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from .config import Settings
from .redis_connection import FAIL_FAST_RETRY

PREFIX = "chatbot"
PENDING = f"{PREFIX}:pending"  # sorted set: pending message id -> when its task was last sent
MAX_LISTED_MESSAGES = 200

_COMPLETE = """
redis.call('ZREM', KEYS[3], ARGV[7])
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'answer', ARGV[2], 'articles', ARGV[3],
           'confidence', ARGV[4], 'answered_at', ARGV[5])
if ARGV[1] == 'escalated' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[10], '*', 'conversation_id', ARGV[6],
             'message_id', ARGV[7], 'question', ARGV[8], 'lang', ARGV[9], 'created_at', ARGV[5])
end
return 1
"""

# The enqueue request's Redis work in one round trip. KEYS: the conversation, the new message, the
# conversation's list, the pending index, the idempotency key (or the conversation again when the
# post has none), the task's queue hash and queue (Dramatiq's; the conversation twice when the
# post enqueues no task), then one rate-limit counter per active scope. ARGV: new message id,
# conversation id, text, lang, created_at, TTL in seconds, the pending score (full precision),
# "1" when the post has an idempotency key, the counters' TTL, message key prefix, the task's
# Redis id ("" for none) and encoded message, then each counter's limit.
# Returns {'missing'}; {'limited', n} (n: the first scope over its limit, from 1; every counter
# counts the post, as before); {'named', id, status, text} (the key names an earlier message);
# {'stored', id}: the message and its task, in one step. Same steps and order as the commands it
# replaces (EXISTS, the rate-limit pipeline, the MULTI that stored a message and the script that
# stored it once per key, then Dramatiq's enqueue).
_POST = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'missing'}
end
local counts = {}
for i = 8, #KEYS do
  counts[#counts + 1] = redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[9])
end
for i, count in ipairs(counts) do
  if count > tonumber(ARGV[12 + i]) then
    return {'limited', i}
  end
end
if ARGV[8] == '1' and not redis.call('SET', KEYS[5], ARGV[1], 'NX', 'EX', ARGV[6]) then
  local named = redis.call('GET', KEYS[5])
  local msg = ARGV[10] .. named
  return {'named', named, redis.call('HGET', msg, 'status'), redis.call('HGET', msg, 'text')}
end
redis.call('HSET', KEYS[2], 'conversation_id', ARGV[2], 'text', ARGV[3], 'lang', ARGV[4],
           'status', 'pending', 'created_at', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[11], ARGV[12])
  redis.call('RPUSH', KEYS[7], ARGV[11])
end
return {'stored', ARGV[1]}
"""

# KEYS: the pending index. ARGV: sent before this time, now, at most this many, message key prefix.
# The messages still pending that were last sent before ARGV[1], marked sent now; the index
# forgets the others (completed, or expired with their conversation).
_CLAIM_STALE = """
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, mid in ipairs(ids) do
  if redis.call('HGET', ARGV[4] .. mid, 'status') == 'pending' then
    redis.call('ZADD', KEYS[1], ARGV[2], mid)
    out[#out + 1] = mid
  else
    redis.call('ZREM', KEYS[1], mid)
  end
end
return out
"""


def new_id() -> str:
    return uuid.uuid4().hex


def is_valid_id(value: str) -> bool:
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


@dataclass(frozen=True)
class Added:
    """The message a post with an Idempotency-Key names: stored now, or by an earlier post."""

    message_id: str
    created: bool
    status: str | None = None  # the earlier message's; None when it is gone (expired)
    text: str | None = None


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    retry_after: int
    scope: str = ""


@dataclass(frozen=True)
class Posted:
    """What Store.post_message did: no such conversation, rate-limited, or the message added
    (stored now, or named by an earlier post with the same Idempotency-Key)."""

    found: bool
    limit: RateLimitResult
    added: Added | None = None


# the store's client fails fast when Redis is down and reconnects by itself when it is back
CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 1.0,
    "socket_timeout": 2.0,
    "health_check_interval": 15,
    "retry": FAIL_FAST_RETRY,
}


class TaskWrite(Protocol):
    """A task to store in the same step as its message: the keys and values of its queue's
    write (``runtime.ScriptedEnqueue``: a hash of the queue's messages and the queue)."""

    @property
    def keys(self) -> tuple[str, str]: ...

    @property
    def values(self) -> tuple[str, bytes]: ...


def connect(url: str) -> redis.Redis:
    """The store's client of the one Redis server at ``url``."""
    return redis.Redis.from_url(url, **CLIENT_OPTIONS)


class Store:
    def __init__(
        self,
        client: redis.Redis,
        ttl_seconds: int,
        escalation_stream: str,
        escalation_maxlen: int = Settings.escalation_maxlen,
    ) -> None:
        self.r = client
        self.ttl = ttl_seconds
        self.stream = escalation_stream
        self.escalation_maxlen = escalation_maxlen  # approximate: MAXLEN ~ trims whole nodes
        self._complete = client.register_script(_COMPLETE)
        self._claim_stale = client.register_script(_CLAIM_STALE)
        self._post = client.register_script(_POST)

    @staticmethod
    def _conv(cid: str) -> str:
        return f"{PREFIX}:conv:{cid}"

    @staticmethod
    def _msg(mid: str) -> str:
        return f"{PREFIX}:msg:{mid}"

    def ping(self) -> None:
        self.r.ping()

    def create_conversation(self, lang: str | None) -> str:
        cid = new_id()
        key = self._conv(cid)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={"created_at": f"{time.time():.3f}", "lang": lang or ""})
        pipe.expire(key, self.ttl)
        pipe.execute()
        return cid

    def conversation_exists(self, cid: str) -> bool:
        return is_valid_id(cid) and bool(self.r.exists(self._conv(cid)))

    def add_message(self, cid: str, text: str, lang: str) -> str:
        """Store a message in an existing conversation (no key, no rate limits); its id."""
        return self._added(self.post_message(cid, text, lang, None, []), cid).message_id

    def post_message(
        self,
        cid: str,
        text: str,
        lang: str,
        key: str | None,
        limits: list[tuple[str, int]],
        window: int = 60,
        *,
        mid: str | None = None,
        task: TaskWrite | None = None,
    ) -> Posted:
        """conversation_exists, hit_rate_limits and add_message (``key`` None) or
        add_message_once in one round trip (one Lua script, atomic). A new message gets the id
        ``mid`` (default: a new one), and ``task`` (its task's queue write) is stored with it, in
        the same step: a message is never stored without its task, nor a task without it."""
        active = [(scope, limit) for scope, limit in limits if limit > 0]
        now = time.time()
        slot = int(now // window)
        mid, conv = mid or new_id(), self._conv(cid)
        keys = [conv, self._msg(mid), f"{conv}:messages", PENDING]
        keys.append(self._idempotency(cid, key) if key is not None else conv)
        keys += task.keys if task is not None else (conv, conv)
        keys += [f"{PREFIX}:rl:{scope}:{slot}" for scope, _ in active]
        args: list[Any] = [mid, cid, text, lang, f"{now:.3f}", self.ttl, repr(now)]
        args += ["0" if key is None else "1", window + 1, f"{PREFIX}:msg:"]
        args += task.values if task is not None else ("", "")
        args += [limit for _, limit in active]
        reply = self._post(keys=keys, args=args)
        allowed = RateLimitResult(True, 0)
        if reply[0] == "missing":
            return Posted(False, allowed)
        if reply[0] == "limited":
            retry_after = max(1, int((slot + 1) * window - now) + 1)
            scope = active[int(reply[1]) - 1][0].split(":", 1)[0]
            return Posted(True, RateLimitResult(False, retry_after, scope))
        if reply[0] == "named":
            return Posted(True, allowed, Added(reply[1], False, reply[2], reply[3]))
        return Posted(True, allowed, Added(mid, created=True, status="pending", text=text))

    def _idempotency(self, cid: str, key: str) -> str:
        return f"{self._conv(cid)}:idem:{key}"

    def add_message_once(self, cid: str, text: str, lang: str, key: str) -> Added:
        """Store the message unless ``key`` already names one in this conversation (same TTL)."""
        return self._added(self.post_message(cid, text, lang, key, []), cid)

    @staticmethod
    def _added(posted: Posted, cid: str) -> Added:
        if posted.added is None:
            raise KeyError(f"no conversation {cid}")
        return posted.added

    def wait_for_replicas(self, mid: str, replicas: int, timeout_ms: int, replay: bool) -> int:
        """How many replicas have the message (and its task): at most ``replicas``.

        WAIT covers this connection's writes, so a write to the message goes first on the same
        connection (one pipeline): replication is in order, so the message and its task, stored
        before it by the post's script (on any pooled connection), are covered too. A replay
        counts itself on the message.
        """
        pipe = self.r.pipeline(transaction=False)
        if replay:
            pipe.hincrby(self._msg(mid), "replays", 1)
        else:
            pipe.hset(self._msg(mid), "enqueued_at", f"{time.time():.3f}")
        pipe.execute_command("WAIT", replicas, timeout_ms)
        return int(pipe.execute()[-1])

    def get_message(self, mid: str) -> dict[str, str] | None:
        data = self.r.hgetall(self._msg(mid))
        return data or None

    def list_messages(self, cid: str) -> list[dict[str, Any]]:
        ids = self.r.lrange(f"{self._conv(cid)}:messages", -MAX_LISTED_MESSAGES, -1)
        pipe = self.r.pipeline(transaction=False)
        for mid in ids:
            pipe.hgetall(self._msg(mid))
        out = []
        for mid, data in zip(ids, pipe.execute(), strict=True):
            if data:
                out.append(_public_message(mid, data))
        return out

    def complete(
        self,
        mid: str,
        message: dict[str, str],
        status: str,
        answer: str,
        articles: list[dict[str, str]],
        confidence: float,
    ) -> bool:
        """Record the outcome once; False when the message was already completed (redelivery)."""
        if status not in {"answered", "escalated"}:
            raise ValueError(f"bad status {status!r}")
        done = self._complete(
            keys=[self._msg(mid), self.stream, PENDING],
            args=[
                status,
                answer,
                json.dumps(articles, ensure_ascii=False),
                f"{confidence:.4f}",
                f"{time.time():.3f}",
                message.get("conversation_id", ""),
                mid,
                message.get("text", ""),
                message.get("lang", ""),
                self.escalation_maxlen,
            ],
        )
        return bool(done)

    def claim_stale_pending(self, older_than_s: float, limit: int = 100) -> list[str]:
        """The messages still pending whose task was last sent over ``older_than_s`` ago.

        Each is marked sent now, so of several sweepers one gets it, and again only after
        ``older_than_s``: the caller sends its task anew.
        """
        now = time.time()
        # Full precision: a score rounded to ms could land just past a message sent this ms.
        args = [repr(now - older_than_s), repr(now), limit, f"{PREFIX}:msg:"]
        return list(self._claim_stale(keys=[PENDING], args=args))

    def hit_rate_limits(self, limits: list[tuple[str, int]], window: int = 60) -> RateLimitResult:
        """Fixed-window counters, one round trip for all scopes; limit 0 means off."""
        active = [(scope, limit) for scope, limit in limits if limit > 0]
        if not active:
            return RateLimitResult(True, 0)
        now = time.time()
        slot = int(now // window)
        pipe = self.r.pipeline(transaction=False)
        for scope, _ in active:
            key = f"{PREFIX}:rl:{scope}:{slot}"
            pipe.incr(key)
            pipe.expire(key, window + 1)
        counts = pipe.execute()[0::2]
        retry_after = max(1, int((slot + 1) * window - now) + 1)
        for (scope, limit), count in zip(active, counts, strict=True):
            if count > limit:
                return RateLimitResult(False, retry_after, scope.split(":", 1)[0])
        return RateLimitResult(True, 0)


def _public_message(mid: str, data: dict[str, str]) -> dict[str, Any]:
    confidence = data.get("confidence")
    answered_at = data.get("answered_at")
    return {
        "message_id": mid,
        "text": data.get("text", ""),
        "lang": data.get("lang", ""),
        "status": data.get("status", "pending"),
        "answer": data.get("answer") or None,
        "articles": json.loads(data["articles"]) if data.get("articles") else [],
        "confidence": float(confidence) if confidence else None,
        "created_at": float(data.get("created_at", "0")),
        "answered_at": float(answered_at) if answered_at else None,
    }
