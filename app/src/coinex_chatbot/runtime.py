"""The process's one runtime: its Settings, and the Store and Dramatiq broker built from them.

The web app and the actors both use ``get_runtime()``: built once, from the settings of the first
call or else from the environment; a call with other settings replaces it (tests). Both Redis
clients come from redis_connection.py: REDIS_URL's server, or the primary Sentinel names.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Middleware, TimeLimitExceeded

from .config import Settings, load_settings
from .logs import log_event, setup_logging
from .redis_connection import redis_client
from .store import CLIENT_OPTIONS, Store

log = logging.getLogger("coinex_chatbot.tasks")


@dataclass(frozen=True)
class ScriptedEnqueue:
    """A Dramatiq message for a store script to enqueue in the same step as the data it is about.

    ``keys`` and ``values`` are those of the enqueue of Dramatiq's dispatch.lua: HSET of the
    queue's messages hash (the message's Redis id -> the encoded message), then RPUSH of the id
    on the queue. test_store checks that Dramatiq's own consumer fetches what the script wrote.
    """

    message: dramatiq.Message
    keys: tuple[str, str]  # the queue's messages hash, the queue
    values: tuple[str, bytes]  # the message's Redis id, the encoded message


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: Store
    broker: FailoverSafeRedisBroker


_current: Runtime | None = None


def get_runtime(settings: Settings | None = None) -> Runtime:
    """The process's runtime for ``settings`` (default: the one built, or the environment's)."""
    global _current
    if _current is not None and (settings is None or settings == _current.settings):
        return _current
    settings = settings or load_settings()
    broker = make_broker(settings)
    if _current is not None:  # actors declared on the previous broker now send through this one
        for actor in _current.broker.actors.values():
            actor.broker = broker
            broker.declare_actor(actor)
    dramatiq.set_broker(broker)
    store = Store(
        redis_client(settings, **CLIENT_OPTIONS),
        settings.data_ttl_seconds,
        settings.escalation_stream,
        settings.escalation_maxlen,
    )
    _current = Runtime(settings, store, broker)
    return _current


class WarmUp(Middleware):
    """Load the knowledge base when a worker process boots (worker.py emits process_boot), not on
    its first message."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        from .knowledge import get_knowledge_base

        setup_logging(get_runtime().settings.log_level)
        started = time.monotonic()
        kb = get_knowledge_base()
        log_event(
            log,
            "knowledge base loaded",
            seconds=round(time.monotonic() - started, 3),
            prebuilt_indexes=kb.prebuilt_note or "used",
        )


class RetryAfterRedisReturns(Middleware):
    """A message that failed because Redis was down is retried once Redis is back, never dropped.

    Dramatiq's Retries enqueues the retry at once; while Redis is down that enqueue fails, the
    failure is only logged, and the original message is acked as soon as Redis returns: the
    customer's message would stay pending for ever. This runs before Retries (after-hooks run in
    reverse order) and holds the worker thread until Redis answers, as Dramatiq does for acks.
    """

    def after_process_message(
        self,
        broker: RedisBroker,
        message: dramatiq.Message,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        if not isinstance(exception, (redis.ConnectionError, redis.TimeoutError)):
            return
        while True:
            # the actor's time limit may fire while this thread waits: it has returned already
            with contextlib.suppress(TimeLimitExceeded):
                try:
                    broker.client.ping()
                    return
                except redis.RedisError:
                    time.sleep(1)


class ReconcilingConsumer(_RedisConsumer):
    """A consumer that puts back what its worker id's ack set holds but it does not.

    A fetch adds the message to the set of the worker id; the ack removes it. After a failover
    that set on the promoted replica may hold messages this process no longer has: fetched on the
    lost primary, then answered and acked there (writes that never reached a replica), or
    fetched by a call whose reply was lost and that redis-py retried on the new primary. No
    error need reach Dramatiq (redis-py retries, and reconnects a broken pooled connection
    silently), so the worker id is not rotated and goes on heartbeating: maintenance never puts
    them back. Every CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS this consumer compares the set with
    the messages it holds (fetched, not yet acked) and requeues the others. Requeue removes a
    message from the set first, so one acked meanwhile is not put back; one put back that was
    answered is a duplicate that Store.complete ignores.
    """

    def __init__(self, broker: RedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.held: set[str] = set()  # Redis ids of the messages returned and not yet (n)acked
        self.interval = broker.heartbeat_timeout / 1000
        self.next_check = time.monotonic() + self.interval

    def __next__(self) -> dramatiq.MessageProxy | None:
        if time.monotonic() >= self.next_check:
            try:
                self.requeue_orphans()
            except redis.ConnectionError as e:
                raise ConnectionClosed(e) from None
            self.next_check = time.monotonic() + self.interval
        message = super().__next__()
        if message is not None:
            self.held.add(message.options["redis_message_id"])
        return message

    def ack(self, message: dramatiq.MessageProxy) -> None:
        try:
            super().ack(message)
        finally:
            self.held.discard(message.options["redis_message_id"])

    def nack(self, message: dramatiq.MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self.held.discard(message.options["redis_message_id"])

    def close(self) -> None:
        """Put back the messages fetched but not yet handed to the worker.

        A fetch moves up to ``prefetch`` messages into this worker id's ack set at once; the
        consumer thread takes them one by one. On a graceful stop it leaves its loop after the
        one it holds, and Dramatiq requeues only what reached the work queue: the rest of the
        batch stayed in the ack set of a worker id that had exited, until queue maintenance put
        it back a heartbeat timeout later (two customers' messages answered 112 s late in a
        `-e ws=3` restart under load).
        """
        leftover = [data for data in self.message_cache if data is not None]
        self.message_cache = []
        if leftover:
            ids = [dramatiq.Message.decode(data).options["redis_message_id"] for data in leftover]
            log.info("requeueing %d fetched message(s) of %s on close", len(ids), self.queue_name)
            try:
                self.broker.do_requeue(self.queue_name, *ids)
            except redis.ConnectionError as e:  # the Redis lost: maintenance puts them back
                raise ConnectionClosed(e) from None
        super().close()

    def requeue_orphans(self) -> None:
        broker = self.broker
        acks = f"{broker.namespace}:__acks__.{broker.broker_id}.{self.queue_name}"
        in_set = {m.decode() if isinstance(m, bytes) else m for m in broker.client.smembers(acks)}
        # read after the set: a message acked in between is in neither, or its requeue is a no-op
        held = set(self.held)
        held |= {
            dramatiq.Message.decode(data).options["redis_message_id"]
            for data in list(self.message_cache)
            if data is not None
        }
        orphans = sorted(in_set - held)
        if orphans:
            log.warning(
                "requeueing %d message(s) of %s held by worker id %s but not by this worker: %s",
                len(orphans),
                self.queue_name,
                broker.broker_id,
                orphans,
            )
            broker.do_requeue(self.queue_name, *orphans)


# A message whose task a dead worker held is requeued by queue maintenance once that worker has
# missed a heartbeat timeout; the resend below is for a message with no task left at all, so it
# waits two. With one, both could fire for the same message (the new worker's sweep resent it,
# and maintenance requeued it when the dead worker's heartbeat expired): it was delivered twice,
# the second delivery a duplicate (test_worker_faults' SIGKILL test, under load).
RESEND_AFTER_HEARTBEATS = 2


class ResendStalePending(Middleware):
    """Each Dramatiq worker process sends anew the task of a message pending for too long.

    A message and its task are stored in one step (``Store.post_message``), but a task's answer and
    its ack are separate writes (the store's connection, then the broker's): when the primary is
    lost, the promoted replica may have one without the other. A message left pending with no task
    to answer it (the task acked on the new primary while its answer was lost with the old one, or a
    task sent again by this very sweep and lost) would stay pending for ever. The store indexes
    pending messages by when their task was sent; every half ``older_than_s`` this sends the task
    again of each one still pending that long after (claimed atomically: one sweeper sends it). A
    task sent twice answers once: the actor does nothing for a message no longer pending, and
    Store.complete acts only once.
    """

    def __init__(self, older_than_s: float) -> None:
        self.older_than_s = older_than_s
        self.stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        threading.Thread(target=self.run, name="resend-stale-pending", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop.set()

    def run(self) -> None:
        from .tasks import answer_message

        while not self.stop.wait(self.older_than_s / 2):
            try:
                for mid in get_runtime().store.claim_stale_pending(self.older_than_s):
                    log.warning(
                        "message %s still pending %.0f s after its task was sent: sending it again",
                        mid,
                        self.older_than_s,
                    )
                    answer_message.send(mid)
            except redis.RedisError as e:
                log.warning("could not resend the tasks of stale pending messages: %s", e)


class FailoverSafeRedisBroker(RedisBroker):
    """A worker whose consumer restarts (its Redis connection was lost) goes on under a new id.

    Dramatiq keeps each fetched message in a set of its worker's until it is acked, and requeues
    only a dead worker's set. When the primary is lost with writes no replica had (a fetch's ack,
    an answer), the promoted replica holds such messages in the set of a worker that is still
    alive: they would stay pending until that worker restarts. Under a new id the old one stops
    heartbeating, so after CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS queue maintenance puts its messages
    back; one already answered is then a duplicate that Store.complete ignores.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.consumed: set[str] = set()  # the queues a consumer was started for

    def scripted_enqueue(self, message: dramatiq.Message) -> ScriptedEnqueue:
        """``message`` as ``enqueue`` (no delay) would put it on its queue, for a store script to
        write: with its own Redis id, the enqueue middleware's before-hooks run. Once the script
        has stored it, call ``scripted_enqueued``."""
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        self.emit_before("enqueue", message, None)
        queue = f"{self.namespace}:{message.queue_name}"
        values = (message.options["redis_message_id"], message.encode())
        return ScriptedEnqueue(message, (f"{queue}.msgs", queue), values)

    def scripted_enqueued(self, enqueued: ScriptedEnqueue) -> None:
        """The enqueue middleware's after-hooks, once a script stored ``enqueued``."""
        self.emit_after("enqueue", enqueued.message, None)

    @property
    def consumer_class(self) -> type[ReconcilingConsumer]:
        return ReconcilingConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        if queue_name in self.consumed:  # a restart: the consumer thread lost its connection
            old, self.broker_id = self.broker_id, str(uuid.uuid4())
            log.warning(
                "consumer of %s restarted: worker id %s is now %s", queue_name, old, self.broker_id
            )
        self.consumed.add(queue_name)
        return super().consume(queue_name, prefetch=prefetch, timeout=timeout)


def make_broker(s: Settings) -> FailoverSafeRedisBroker:
    """Dramatiq's broker on the settings' Redis primary (through Sentinel when configured)."""
    client = redis_client(
        s,
        socket_connect_timeout=1.0,
        # a primary that vanished without closing its connections (host lost) is given up
        # after this long: Dramatiq's own commands are all short scripts
        socket_timeout=5.0,
        health_check_interval=15,
    )
    broker = FailoverSafeRedisBroker(
        client=client,
        heartbeat_timeout=s.broker_heartbeat_timeout_ms,
        maintenance_chance=s.broker_maintenance_chance,
    )
    broker.add_middleware(WarmUp())
    broker.add_middleware(RetryAfterRedisReturns())
    broker.add_middleware(
        ResendStalePending(RESEND_AFTER_HEARTBEATS * s.broker_heartbeat_timeout_ms / 1000)
    )
    return broker
