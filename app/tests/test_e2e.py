"""End to end with real processes: uWSGI serving the app, a Dramatiq worker, redis-server."""

from __future__ import annotations

import json
import re
import time

import pytest

from services import Stack, wait_for

pytestmark = pytest.mark.e2e


def tickets_for(redis_client, stream: str, message_id: str) -> list[dict]:
    return [f for _, f in redis_client.xrange(stream) if f["message_id"] == message_id]


def test_question_is_answered_from_the_knowledge_base(live_stack: Stack):
    result = live_stack.ask("How many confirmations before my bitcoin deposit shows up?")
    assert result["status"] == "answered"
    assert result["answer"] and result["confidence"] >= 0.35
    assert result["articles"] and "deposit" in result["articles"][0]["id"]
    assert "confirm" in result["answer"].lower()


def test_chinese_question_gets_a_chinese_answer(live_stack: Stack):
    result = live_stack.ask("提现一直在处理中是怎么回事？")
    assert result["status"] == "answered"
    assert result["lang"] == "zh"
    assert re.search(r"[\u4e00-\u9fff]", result["answer"])
    assert "withdraw" in result["articles"][0]["id"]


def test_off_topic_question_is_escalated_with_one_ticket(live_stack: Stack, redis_client):
    result = live_stack.ask("Can you recommend a good pizza place in Rome?")
    assert result["status"] == "escalated"
    assert "human" in result["answer"].lower()
    tickets = tickets_for(redis_client, "chatbot:escalations", result["message_id"])
    assert len(tickets) == 1
    ticket = tickets[0]
    assert ticket["conversation_id"] == result["conversation_id"]
    assert ticket["question"] == "Can you recommend a good pizza place in Rome?"
    assert ticket["lang"] == "en" and float(ticket["created_at"]) > 0


def test_redelivered_message_is_not_answered_twice(live_stack: Stack, redis_client):
    from coinex_chatbot.tasks import answer_message

    escalated = live_stack.ask("What's the best recipe for lasagna?")
    answered = live_stack.ask("How do I create an API key?")
    assert (escalated["status"], answered["status"]) == ("escalated", "answered")
    log = live_stack.processes["dramatiq"]
    duplicates_before = log.output().count('"outcome": "duplicate"')
    for result in (escalated, answered):
        answer_message.send(result["message_id"])
        answer_message.send(result["message_id"])
    wait_for(
        lambda: log.output().count('"outcome": "duplicate"') >= duplicates_before + 4,
        20,
        "the worker to process the redelivered messages",
    )
    assert len(tickets_for(redis_client, "chatbot:escalations", escalated["message_id"])) == 1
    for result in (escalated, answered):
        messages = live_stack.get(
            f"/api/v1/conversations/{result['conversation_id']}/messages"
        ).json()["messages"]
        assert len(messages) == 1
        assert messages[0]["answered_at"] == result["answered_at"]
        assert messages[0]["answer"] == result["answer"]


def test_worker_logs_one_json_line_per_task(live_stack: Stack):
    result = live_stack.ask("How do I turn on two-factor authentication?")
    worker = live_stack.processes["dramatiq"]

    def task_lines() -> list[str]:
        return [
            line
            for line in worker.output().splitlines()
            if result["message_id"] in line and '"task"' in line
        ]

    # the line is written just after the outcome is stored
    wait_for(lambda: task_lines(), 5, "the task's log line")
    time.sleep(0.5)
    lines = task_lines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["outcome"] == "answered" and entry["duration_ms"] >= 0


def test_metrics_are_summed_across_uwsgi_workers(live_stack: Stack):
    def count() -> float:
        text = live_stack.get("/metrics").text
        match = re.search(
            r'chatbot_http_requests_total\{endpoint="/healthz",method="GET",status="200"\} (\S+)',
            text,
        )
        return float(match.group(1)) if match else 0.0

    before = count()
    for _ in range(40):
        assert live_stack.get("/healthz").status_code == 200
    # 40 requests spread over 2 uWSGI worker processes must all be counted, whoever answers
    assert count() == before + 40
