"""The questions the deployment's own checks and tools send: each must be answered (confidence at
or above the app's default threshold, not escalated) with its article.

They are read from where they are sent wherever that is a plain value (the role's health gate
question and article in roles/coinex_chatbot/defaults/main.yml, the fleet load generator's
QUESTIONS in molecule/fleet/files/loadgen.py); the others are listed with the file that sends
them. A question added to the load generator without an expected article here fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from coinex_chatbot.config import load_settings
from coinex_chatbot.knowledge import KnowledgeBase, get_knowledge_base

ROOT = Path(__file__).resolve().parents[2]
THRESHOLD = load_settings({"CHATBOT_ENV": "local"}).confidence_threshold
DEFAULTS = yaml.safe_load((ROOT / "roles/coinex_chatbot/defaults/main.yml").read_text("utf-8"))
LOADGEN = ROOT / "molecule/fleet/files/loadgen.py"


def _loadgen_constant(name: str) -> object:
    """A module-level constant of the fleet load generator, read without running it."""
    for node in ast.parse(LOADGEN.read_text("utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError(f"{LOADGEN} has no {name}")


# The article each of the load generator's plain questions is about (it expects them answered).
LOADGEN_ARTICLES = {
    "How do I reset my 2FA?": "2fa-lost-reset",
    "How long does a withdrawal take?": "withdrawal-pending",
    "What are the spot trading fees?": "trading-fees",
    "How do I complete KYC verification?": "kyc-how-to",
    "如何重置谷歌验证器？": "2fa-lost-reset",
}
# Sent by other files and expected answered (the file that sends each).
OTHERS = [
    # molecule/fleet/tasks/lb_chat.yml, molecule/fleet/files/kill_drill.py,
    # molecule/shared/files/edge_probe.py, tests/role/test_local_deploy.py
    ("How do I reset my 2FA?", "2fa-lost-reset"),
    ("How many confirmations before my bitcoin deposit shows up?", "deposit-confirmations"),
    ("提现一直在处理中是怎么回事？", "withdrawal-pending"),  # app/tests/test_e2e.py
    ("How do I create an API key?", "api-key-create"),  # app/tests/test_e2e.py
    ("How do I turn on two-factor authentication?", "2fa-enable"),  # app/tests/test_e2e.py
    ("How do I verify my identity (KYC)?", "kyc-how-to"),  # app/tests/test_redis_down.py
    ("How do I withdraw USDT?", "withdrawal-how-to"),  # app/tests/test_redis_down.py
    ("How do I cancel a pending withdrawal?", "withdrawal-cancel"),  # test_worker_faults.py
    ("How long does a BTC deposit take to arrive?", "deposit-confirmations"),  # test_chat_page
    ("我的两步验证丢了怎么办", "2fa-lost-reset"),  # app/tests/test_chat_page.py
]


def _deployment_questions() -> list[tuple[str, str]]:
    questions = [
        (
            DEFAULTS["coinex_chatbot_health_question"],
            DEFAULTS["coinex_chatbot_health_expected_article"],
        )
    ]
    questions += [
        (q, LOADGEN_ARTICLES.get(q, "(none listed)")) for q in _loadgen_constant("QUESTIONS")
    ]
    return list(dict.fromkeys(questions + OTHERS))


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return get_knowledge_base()


@pytest.mark.parametrize(("question", "expected"), _deployment_questions())
def test_deployment_question_is_answered_with_its_article(
    kb: KnowledgeBase, question: str, expected: str
) -> None:
    answer = kb.answer(question)
    assert (answer.top_article_id, answer.confidence >= THRESHOLD) == (expected, True), (
        f"{question!r}: top {answer.top_article_id} at confidence {answer.confidence}"
    )


def test_the_load_generators_escalation_question_is_escalated(kb: KnowledgeBase) -> None:
    """loadgen.py sends this to get escalations and counts on them."""
    assert kb.answer(str(_loadgen_constant("GIBBERISH"))).confidence < THRESHOLD
