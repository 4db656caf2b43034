"""The customer chat page (GET /) in Debian's headless Chromium, driven by Playwright.

Everything is real: the page talks to uWSGI serving the app, a Dramatiq worker answers from the
knowledge base, Redis holds the data (the `live_stack` fixture in conftest.py). Chromium must be
Debian's /usr/bin/chromium (installed by scripts/setup-chromium); when it is missing the tests fail.

Set CHAT_PAGE_SCREENSHOT=docs/img/chat-page.png to save a screenshot of an answered question.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from services import RedisServer, Stack, running_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANSWER_TIMEOUT_MS = 20_000
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class ChatPage:
    """A browser page on the chat, with what it logged and what it sent to the API."""

    page: Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    api_posts: list[tuple[str, Any]] = field(default_factory=list)
    # every call to a conversation's URL: (method, url, its Authorization header or None)
    conversation_calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    # every message post: (its text, its Idempotency-Key header or None)
    message_posts: list[tuple[str, str | None]] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def open(self, query: str = "") -> None:
        response = self.page.goto(self.base_url + "/" + query)
        assert response is not None
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, response.headers
        expect(self.page.locator("body.ready")).to_have_count(1)

    def type_question(self, text: str) -> None:
        self.page.locator("#chat-input").fill(text)

    def bot_replies(self):
        return self.page.locator("#messages .message.bot")

    def open_and_get_first_answer(self, question: str) -> None:
        """Open the page, send the question with Enter and wait for the bot's first reply."""
        self.open()
        self.type_question(question)
        self.page.locator("#chat-input").press("Enter")
        expect(self.bot_replies()).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)

    def assert_no_console_errors(self) -> None:
        assert self.console_errors == [], f"browser console errors: {self.console_errors}"
        assert self.csp_violations == [], (
            f"Content-Security-Policy violations: {self.csp_violations}"
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the chat page test needs Debian's Chromium; "
            "run scripts/setup-chromium (apt-get install chromium)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture()
def chat(browser: Browser, live_stack) -> Iterator[ChatPage]:
    with chat_page(browser, live_stack.base_url) as chat:
        yield chat


@contextmanager
def chat_page(browser: Browser, base_url: str) -> Iterator[ChatPage]:
    context = browser.new_context(locale="en-US", viewport={"width": 1100, "height": 820})
    page = context.new_page()
    page.set_default_timeout(10_000)
    chat = ChatPage(page, base_url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            chat.console_errors.append(f"{message.text} ({message.location})")

    def on_request(request: Request) -> None:
        if request.method == "POST" and "/api/v1/" in request.url:
            chat.api_posts.append((request.url, json.loads(request.post_data or "null")))
        if "/api/v1/conversations/" in request.url:
            auth = request.headers.get("authorization")
            chat.conversation_calls.append((request.method, request.url, auth))
            if request.method == "POST":
                text = json.loads(request.post_data or "null")["text"]
                chat.message_posts.append((text, request.headers.get("idempotency-key")))

    # every violation of the page's Content-Security-Policy is reported here, across reloads
    page.expose_function("reportCspViolation", lambda text: chat.csp_violations.append(text))
    page.add_init_script(CSP_LISTENER)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: chat.console_errors.append(f"uncaught: {exc}"))
    page.on("request", on_request)
    try:
        yield chat
    finally:
        context.close()


def test_english_question_gets_an_answer_that_survives_a_reload(chat: ChatPage) -> None:
    page = chat.page
    chat.open()
    expect(page).to_have_title(re.compile("CoinEx Support"))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    send = page.locator("#send-button")
    expect(send).to_be_disabled()

    question = "How long does a BTC deposit take to arrive?"
    chat.type_question(question)
    expect(page.locator("#char-counter")).to_have_text(f"{len(question)} / 2000")
    expect(send).to_be_enabled()
    send.click()

    expect(page.locator("#messages .message.user")).to_have_text(re.compile(re.escape(question)))
    expect(page.locator("#chat-input")).to_have_value("")
    answer = chat.bot_replies().first
    expect(answer).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(answer).to_have_class(re.compile(r"\banswered\b"))
    expect(answer).to_contain_text(re.compile("confirm", re.IGNORECASE))
    expect(answer.locator("[data-testid=related-articles]")).to_contain_text("Related articles:")
    expect(answer.locator(".articles-list li").first).not_to_be_empty()
    expect(page.locator("[data-testid=typing]")).to_have_count(0)

    create, message = chat.api_posts[0][1], chat.api_posts[1][1]
    assert create == {"lang": "en"}
    assert message == {"text": question, "lang": "en"}

    # A follow-up in the same conversation: polling starts again and a second reply arrives.
    chat.type_question("I lost my phone with Google Authenticator, how do I reset 2FA?")
    page.locator("#chat-input").press("Enter")
    expect(chat.bot_replies()).to_have_count(2, timeout=ANSWER_TIMEOUT_MS)
    assert chat.api_posts[2][0] == chat.api_posts[1][0], "the follow-up opened a new conversation"

    # The log follows new replies: it ends scrolled to the bottom (smooth scrolling takes a moment).
    page.wait_for_function(
        "() => { const m = document.getElementById('messages');"
        " return m.scrollHeight - m.scrollTop - m.clientHeight < 2; }"
    )
    screenshot = os.environ.get("CHAT_PAGE_SCREENSHOT")
    if screenshot:  # tall enough to show the whole conversation
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1100, "height": 1240})
        page.wait_for_timeout(500)
        page.screenshot(path=screenshot)

    replies = [r.inner_text() for r in chat.bot_replies().locator(".message-text").all()]
    page.reload()
    expect(page.locator("body.ready")).to_have_count(1)
    expect(page.locator("#messages .message.user")).to_have_count(2)
    expect(chat.bot_replies().locator(".message-text")).to_have_text(replies)
    chat.assert_no_console_errors()


def test_chinese_ui_and_chinese_answer(chat: ChatPage) -> None:
    page = chat.page
    chat.open()
    page.locator("#lang-switch button[value=zh]").click()

    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page).to_have_title(re.compile("客服"))
    expect(page.locator("#chat-input")).to_have_attribute("placeholder", "请输入您的问题…")
    expect(page.locator(".welcome-title")).to_have_text("您好，请问有什么可以帮您？")
    expect(page.locator("#lang-switch button[value=zh]")).to_have_attribute("aria-pressed", "true")

    question = "我的两步验证丢了怎么办"
    chat.type_question(question)
    page.locator("#chat-input").press("Enter")

    answer = chat.bot_replies().first
    expect(answer).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(answer).to_have_class(re.compile(r"\banswered\b"))
    text = answer.locator(".message-text").inner_text()
    assert len(CJK.findall(text)) >= 10, f"expected a Chinese answer, got {text!r}"
    assert "验证" in text, f"the answer is not about two-factor authentication: {text!r}"
    expect(answer.locator("[data-testid=related-articles]")).to_contain_text("相关文章：")

    assert chat.api_posts[0][1] == {"lang": "zh"}
    assert chat.api_posts[1][1] == {"text": question, "lang": "zh"}
    chat.assert_no_console_errors()


def test_off_topic_question_is_escalated(chat: ChatPage, redis_client) -> None:
    page = chat.page
    chat.open()
    question = "What is the weather in Paris tomorrow?"
    chat.type_question(question)
    page.locator("#send-button").click()

    escalated = page.locator("#messages .message.bot.escalated")
    expect(escalated).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(escalated).to_contain_text("Connecting you to a human agent")
    expect(page.locator("#messages .message.bot.answered")).to_have_count(0)

    stream = os.environ.get("CHATBOT_ESCALATION_STREAM", "chatbot:escalations")
    tickets = [fields for _, fields in redis_client.xrange(stream)]
    assert [t for t in tickets if t.get("question") == question], tickets

    # The escalation notice follows the language switch, like the rest of the UI.
    page.locator("#lang-switch button[value=zh]").click()
    expect(escalated).to_contain_text("正在为您转接人工客服")
    chat.assert_no_console_errors()


def test_input_rules_escaping_and_no_console_errors(chat: ChatPage) -> None:
    page = chat.page
    chat.open("?lang=zh")
    expect(page.locator("#chat-input")).to_have_attribute("placeholder", "请输入您的问题…")
    page.locator("#lang-switch button[value=en]").click()
    expect(page).to_have_url(re.compile(r"[?&]lang=en\b"))

    box = page.locator("#chat-input")
    send = page.locator("#send-button")
    box.fill("   \n  ")
    expect(send).to_be_disabled()
    box.fill("")
    expect(box).to_have_attribute("maxlength", "2000")

    payload = '<img src=x onerror="window.__xss=1"><b>bold</b>'
    box.type(payload)
    box.press("Shift+Enter")
    box.type("second line & more")
    expect(box).to_have_value(payload + "\nsecond line & more")
    expect(page.locator("#messages .message.user")).to_have_count(0)
    box.press("Enter")

    user = page.locator("#messages .message.user .message-text")
    expect(user).to_have_text(payload + "\nsecond line & more")
    expect(chat.bot_replies()).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
    assert page.locator("#messages img[src=x], #messages b").count() == 0
    assert page.evaluate("window.__xss") is None
    chat.assert_no_console_errors()


def test_the_conversation_token_is_kept_and_sent(chat: ChatPage) -> None:
    page = chat.page
    created: list[dict[str, str]] = []
    page.on(
        "response",
        lambda r: (
            created.append(r.json())
            if r.request.method == "POST" and r.url.endswith("/api/v1/conversations")
            else None
        ),
    )
    chat.open()
    chat.type_question("How do I create an API key?")
    page.locator("#chat-input").press("Enter")
    expect(chat.bot_replies()).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
    assert len(created) == 1, created
    cid, token = created[0]["conversation_id"], created[0]["token"]
    stored = page.evaluate("() => Object.assign({}, window.sessionStorage)")
    assert cid in stored.values() and token in stored.values(), stored

    page.reload()  # the restored conversation is read with its token
    expect(page.locator("#messages .message.user")).to_have_count(1)
    methods = {method for method, _, _ in chat.conversation_calls}
    assert methods == {"GET", "POST"}, chat.conversation_calls
    for method, url, auth in chat.conversation_calls:
        assert f"/api/v1/conversations/{cid}/" in url
        assert auth == f"Bearer {token}", (method, url, auth)
    chat.assert_no_console_errors()


def test_the_policy_is_enforced_and_violations_would_be_seen(chat: ChatPage) -> None:
    """The listener works: an inline script is blocked by the policy, and the test sees it."""
    chat.open()
    chat.page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.__inline = 1";
          document.body.appendChild(s);
        }"""
    )
    for _ in range(50):  # the report arrives asynchronously
        if chat.csp_violations:
            break
        chat.page.wait_for_timeout(100)
    assert chat.page.evaluate("window.__inline") is None
    assert [v for v in chat.csp_violations if v.startswith("script-src")], chat.csp_violations


@pytest.fixture()
def outage(
    browser: Browser, own_redis_aof: RedisServer, app_env, tmp_path
) -> Iterator[tuple[ChatPage, RedisServer, Stack]]:
    """A page on a stack of its own, whose Redis (AOF, as in production) the test may stop."""
    env = {**app_env, "REDIS_URL": own_redis_aof.url}
    with running_stack(env, tmp_path) as stack, chat_page(browser, stack.base_url) as chat:
        yield chat, own_redis_aof, stack


def test_a_redis_outage_shows_retrying_and_the_answer_arrives_after(outage) -> None:
    chat, redis_server, stack = outage
    page = chat.page
    chat.open_and_get_first_answer("How do I create an API key?")

    redis_server.stop()
    # the chat page and /healthz do not need Redis
    assert stack.get("/healthz").status_code == 200
    assert stack.get("/").status_code == 200 and "chat.js" in stack.get("/").text
    question = "How do I withdraw USDT?"
    chat.type_question(question)
    page.locator("#chat-input").press("Enter")
    notice = page.locator("[data-testid=notice]")
    expect(notice).to_have_text("The support service is temporarily unavailable, retrying…")
    user = page.locator("#messages .message.user").nth(1)
    expect(user).to_contain_text("Sending…")  # not "Not sent": the page keeps trying
    for _ in range(100):  # the page retries (after Retry-After: 5 s) while Redis is down
        if len([key for text, key in chat.message_posts if text == question]) >= 2:
            break
        page.wait_for_timeout(100)

    redis_server.start()
    answer = chat.bot_replies().nth(1)
    expect(answer).to_be_visible(timeout=30_000)
    expect(answer).to_have_class(re.compile(r"\banswered\b"))
    expect(notice).to_have_count(0)  # the retry notice is gone once the message is sent
    expect(user).not_to_contain_text("Not sent")

    keys = [key for text, key in chat.message_posts if text == question]
    assert len(keys) >= 2 and len(set(keys)) == 1 and keys[0], chat.message_posts
    first = [key for text, key in chat.message_posts if text != question]
    assert first and first[0] != keys[0], "each typed message has a key of its own"
    cid = chat.conversation_calls[0][1].split("/conversations/")[1].split("/")[0]
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    stored = [
        store.hget(f"chatbot:msg:{mid}", "text")
        for mid in store.lrange(f"chatbot:conv:{cid}:messages", 0, -1)
    ]
    assert stored == ["How do I create an API key?", question], stored
    # the console reports the 503 answers, nothing else
    assert all("503" in error for error in chat.console_errors), chat.console_errors


def test_a_request_without_an_answer_is_sent_again_with_its_key(outage) -> None:
    """uWSGI frozen (SIGSTOP): the post times out in the page after 10 s and is sent again with the
    same key; once uWSGI runs again it handles the abandoned post and the retry: one message."""
    chat, redis_server, stack = outage
    page = chat.page
    chat.open_and_get_first_answer("How do I create an API key?")

    uwsgi = stack.processes["uwsgi"].proc.pid
    os.killpg(uwsgi, signal.SIGSTOP)
    try:
        question = "How do I withdraw USDT?"
        chat.type_question(question)
        page.locator("#chat-input").press("Enter")
        notice = page.locator("[data-testid=notice]")
        expect(notice).to_have_text(
            "The support service is temporarily unavailable, retrying…", timeout=15_000
        )
    finally:
        os.killpg(uwsgi, signal.SIGCONT)
    answer = chat.bot_replies().nth(1)
    expect(answer).to_be_visible(timeout=30_000)
    expect(notice).to_have_count(0)

    keys = [key for text, key in chat.message_posts if text == question]
    assert len(keys) >= 2 and len(set(keys)) == 1, chat.message_posts
    posts = [
        line
        for line in stack.processes["uwsgi"].output().splitlines()
        if '"request"' in line
        and '"POST"' in line
        and "/messages" in line
        and '"status": 202' in line
    ]
    assert len(posts) >= 3, posts  # the first question, the abandoned post and its retry
    cid = chat.conversation_calls[0][1].split("/conversations/")[1].split("/")[0]
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    mids = store.lrange(f"chatbot:conv:{cid}:messages", 0, -1)
    texts = [store.hget(f"chatbot:msg:{mid}", "text") for mid in mids]
    assert texts == ["How do I create an API key?", question], texts
