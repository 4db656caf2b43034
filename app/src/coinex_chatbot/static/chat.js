/* CoinEx support chat page.
 *
 * Talks to the v1 API (docs/architecture.md): creates a conversation on the
 * first message, posts questions (202 + message_id), then polls the message
 * list until each question is "answered" or "escalated". The conversation's
 * token (from the create response) goes with each of its requests as
 * "Authorization: Bearer"; it is kept in sessionStorage next to the id. Every
 * piece of user or server text is inserted with textContent, never as HTML.
 *
 * Each typed message gets one random Idempotency-Key. When the service is
 * temporarily unavailable (503, a timeout, no connection) the page says so
 * ("temporarily unavailable, retrying") and sends the same request again, with
 * the same key, so a message that did arrive the first time is not stored twice.
 */
(function () {
  "use strict";

  var STRINGS = {
    en: {
      pageTitle: "CoinEx Support · Chat",
      pageHeading: "CoinEx customer support chat",
      headerSubtitle: "Customer Support",
      languageGroup: "Language",
      newChat: "New conversation",
      welcomeTitle: "Hi, how can we help?",
      welcomeText: "Ask about deposits, withdrawals, fees, KYC, 2FA, API keys, futures and more. If the assistant cannot help, we connect you to a human agent.",
      suggestDeposit: "How long does a deposit take?",
      suggest2fa: "I lost my 2FA device",
      suggestFees: "What are the withdrawal fees?",
      inputLabel: "Your question",
      inputPlaceholder: "Type your question…",
      inputHint: "Enter to send · Shift+Enter for a new line",
      send: "Send",
      disclaimer: "CoinEx staff will never ask for your password, 2FA codes or private keys.",
      you: "You",
      assistant: "CoinEx Assistant",
      typing: "CoinEx Assistant is typing…",
      relatedArticles: "Related articles:",
      confidence: "Confidence {pct}%",
      escalated: "Connecting you to a human agent…",
      escalatedDetail: "A support agent will reply in this conversation as soon as possible.",
      timeout: "Sorry, this is taking longer than usual. Please wait a moment or try asking again.",
      sending: "Sending…",
      sendFailed: "Not sent",
      errorNetwork: "We could not reach CoinEx Support. Please check your connection and try again.",
      errorGeneric: "Sorry, something went wrong.",
      errorRateLimited: "You are sending messages too quickly.",
      errorUnavailable: "The support service is temporarily unavailable.",
      unavailableRetrying: "The support service is temporarily unavailable, retrying…",
      retryAfter: "Please try again in {s} s.",
      conversationExpired: "Your previous conversation has expired. A new one was started.",
      tooLong: "Your message is longer than {max} characters.",
      counter: "{n} / {max}"
    },
    zh: {
      pageTitle: "CoinEx 客服 · 在线咨询",
      pageHeading: "CoinEx 在线客服",
      headerSubtitle: "在线客服",
      languageGroup: "语言",
      newChat: "新对话",
      welcomeTitle: "您好，请问有什么可以帮您？",
      welcomeText: "您可以咨询充值、提现、手续费、身份认证（KYC）、两步验证、API 密钥、合约等问题。如果智能助手无法解答，我们会为您转接人工客服。",
      suggestDeposit: "充值多久到账？",
      suggest2fa: "我的两步验证设备丢了",
      suggestFees: "提现手续费是多少？",
      inputLabel: "您的问题",
      inputPlaceholder: "请输入您的问题…",
      inputHint: "按 Enter 发送 · Shift+Enter 换行",
      send: "发送",
      disclaimer: "CoinEx 工作人员绝不会向您索要密码、两步验证码或私钥。",
      you: "您",
      assistant: "CoinEx 智能助手",
      typing: "CoinEx 智能助手正在输入…",
      relatedArticles: "相关文章：",
      confidence: "置信度 {pct}%",
      escalated: "正在为您转接人工客服…",
      escalatedDetail: "客服人员将尽快在此对话中回复您。",
      timeout: "抱歉，本次回复时间比平时长。请稍候，或重新提问。",
      sending: "发送中…",
      sendFailed: "未发送",
      errorNetwork: "无法连接 CoinEx 客服，请检查网络后重试。",
      errorGeneric: "抱歉，出现了一点问题。",
      errorRateLimited: "您发送消息的速度过快。",
      errorUnavailable: "客服服务暂时不可用。",
      unavailableRetrying: "客服服务暂时不可用，正在重试…",
      retryAfter: "请在 {s} 秒后重试。",
      conversationExpired: "之前的对话已过期，已为您开始新的对话。",
      tooLong: "消息长度不能超过 {max} 个字符。",
      counter: "{n} / {max}"
    }
  };

  var STORAGE_CONVERSATION = "coinex-chat:conversation_id";
  var STORAGE_TOKEN = "coinex-chat:conversation_token";
  var STORAGE_LANG = "coinex-chat:lang";
  var POLL_INITIAL_MS = 700;
  var POLL_FAST_PERIOD_MS = 10000;
  var POLL_MAX_MS = 3000;
  var POLL_ERROR_MAX_MS = 10000;
  var ANSWER_TIMEOUT_MS = 60000;
  var REQUEST_TIMEOUT_MS = 10000;  // a request without an answer by then is retried
  var RETRY_MAX_DELAY_MS = 10000;
  var RETRY_LIMIT_MS = 120000;     // then the message is shown as not sent

  var body = document.body;
  var apiBase = body.getAttribute("data-api-base") || "/api/v1";
  var maxChars = parseInt(body.getAttribute("data-max-chars"), 10) || 2000;
  var avatarUrl = body.getAttribute("data-avatar") || "";

  var els = {
    messages: document.getElementById("messages"),
    welcome: document.querySelector(".welcome"),
    form: document.getElementById("chat-form"),
    input: document.getElementById("chat-input"),
    send: document.getElementById("send-button"),
    counter: document.getElementById("char-counter"),
    langSwitch: document.getElementById("lang-switch"),
    newChat: document.getElementById("new-chat")
  };

  var state = {
    lang: "en",
    conversationId: null,
    token: null,        // the conversation's bearer token
    exchanges: {},      // message_id -> {el, msg, watchStart, timedOut}
    order: [],          // message ids in display order
    notices: [],        // {el, key, vars, detail}
    sending: false,
    blockedUntil: 0,    // Date.now() before which sending is blocked (Retry-After)
    pollTimer: null,
    pollDelay: POLL_INITIAL_MS,
    pollErrors: 0,
    pollGeneration: 0
  };

  // ---------------------------------------------------------------- helpers

  function t(key, vars) {
    var table = STRINGS[state.lang] || STRINGS.en;
    var text = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : STRINGS.en[key];
    if (vars) {
      Object.keys(vars).forEach(function (name) {
        text = text.split("{" + name + "}").join(String(vars[name]));
      });
    }
    return text;
  }

  function storageGet(store, key) {
    try { return store.getItem(key); } catch (e) { return null; }
  }

  function storageSet(store, key, value) {
    try {
      if (value === null) { store.removeItem(key); } else { store.setItem(key, value); }
    } catch (e) { /* storage disabled: the chat still works for this page view */ }
  }

  function normaliseLang(value) {
    if (!value) { return null; }
    value = String(value).toLowerCase();
    if (value.indexOf("zh") === 0) { return "zh"; }
    if (value.indexOf("en") === 0) { return "en"; }
    return null;
  }

  function initialLang() {
    var params = new URLSearchParams(window.location.search);
    return normaliseLang(params.get("lang")) ||
      normaliseLang(storageGet(window.localStorage, STORAGE_LANG)) ||
      normaliseLang(navigator.language) ||
      normaliseLang(body.getAttribute("data-lang")) ||
      "en";
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function isNearBottom() {
    var m = els.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function scrollToBottom() {
    els.messages.scrollTop = els.messages.scrollHeight;
  }

  function parseTime(value) {
    if (value === undefined || value === null || value === "") { return null; }
    var num = Number(value);
    if (!isNaN(num) && isFinite(num)) {
      return new Date(num < 1e12 ? num * 1000 : num);
    }
    var parsed = Date.parse(value);
    return isNaN(parsed) ? null : new Date(parsed);
  }

  function formatTime(date) {
    if (!date) { return ""; }
    try {
      return date.toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-US",
        { hour: "2-digit", minute: "2-digit" });
    } catch (e) {
      return "";
    }
  }

  // -------------------------------------------------------------------- API

  function retryAfterSeconds(response) {
    var header = response.headers.get("Retry-After");
    if (!header) { return null; }
    var secs = parseInt(header, 10);
    if (!isNaN(secs)) { return Math.max(1, secs); }
    var when = Date.parse(header);
    return isNaN(when) ? null : Math.max(1, Math.ceil((when - Date.now()) / 1000));
  }

  /** A random key for one typed message (works without a secure context too). */
  function newIdempotencyKey() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  }

  /** fetch JSON; resolves to {ok, status, data, retryAfter} or {ok:false, network:true}
   * (no connection, or no answer within REQUEST_TIMEOUT_MS). */
  function api(method, path, payload, token, headers) {
    var options = { method: method, headers: { "Accept": "application/json" }, cache: "no-store" };
    if (token) { options.headers["Authorization"] = "Bearer " + token; }
    Object.keys(headers || {}).forEach(function (name) { options.headers[name] = headers[name]; });
    if (payload !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(payload);
    }
    var timer = null;
    if (window.AbortController) {
      var controller = new AbortController();
      options.signal = controller.signal;
      timer = window.setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    }
    return fetch(apiBase + path, options).then(function (response) {
      return response.text().then(function (raw) {
        var data = null;
        try { data = raw ? JSON.parse(raw) : null; } catch (e) { data = null; }
        return {
          ok: response.ok,
          status: response.status,
          data: data,
          retryAfter: retryAfterSeconds(response)
        };
      });
    }).then(function (res) {
      window.clearTimeout(timer);
      return res;
    }, function () {
      window.clearTimeout(timer);
      return { ok: false, status: 0, network: true, data: null, retryAfter: null };
    });
  }

  /** Worth sending again, unchanged: the service (or its store) is briefly unavailable. */
  function retryable(res) {
    return res.network || res.status === 503 || res.status === 502 || res.status === 504 ||
      res.status === 409;
  }

  /** attempt() again while its result is retryable, for up to RETRY_LIMIT_MS; while it
   * retries, the exchange shows "temporarily unavailable, retrying". */
  function withRetries(attempt, exchange) {
    var started = Date.now();
    var failures = 0;
    function once() {
      return attempt().then(function (res) {
        if (!retryable(res) || Date.now() - started > RETRY_LIMIT_MS) { return res; }
        failures += 1;
        if (!exchange.retryNotice) { exchange.retryNotice = showNotice("unavailableRetrying"); }
        var backoff = Math.min(RETRY_MAX_DELAY_MS, 1000 * Math.pow(2, failures - 1));
        var delay = res.retryAfter ? Math.min(RETRY_MAX_DELAY_MS, res.retryAfter * 1000) : backoff;
        return new Promise(function (resolve) { window.setTimeout(resolve, delay); }).then(once);
      });
    }
    return once().then(function (res) {
      if (exchange.retryNotice) { removeNotice(exchange.retryNotice); exchange.retryNotice = null; }
      return res;
    });
  }

  function createConversation() {
    return api("POST", "/conversations", { lang: state.lang }).then(function (res) {
      if (res.ok && res.data && res.data.conversation_id && res.data.token) {
        setConversation(res.data.conversation_id, res.data.token);
      }
      return res;
    });
  }

  function setConversation(id, token) {
    state.conversationId = id;
    state.token = id ? token : null;
    storageSet(window.sessionStorage, STORAGE_CONVERSATION, id);
    storageSet(window.sessionStorage, STORAGE_TOKEN, state.token);
  }

  /** GET or POST the conversation's messages, with its token. */
  function messagesApi(method, payload, headers) {
    return api(method, "/conversations/" + encodeURIComponent(state.conversationId) + "/messages",
      payload, state.token, headers);
  }

  // -------------------------------------------------------------- rendering

  function applyLanguage() {
    var lang = state.lang;
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    body.setAttribute("data-lang", lang);
    document.title = t("pageTitle");
    document.querySelectorAll("[data-i18n]").forEach(function (node) {
      node.textContent = t(node.getAttribute("data-i18n"));
    });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (node) {
      node.setAttribute("placeholder", t(node.getAttribute("data-i18n-placeholder")));
    });
    document.querySelectorAll("[data-i18n-title]").forEach(function (node) {
      node.setAttribute("title", t(node.getAttribute("data-i18n-title")));
    });
    document.querySelectorAll("[data-i18n-aria-label]").forEach(function (node) {
      node.setAttribute("aria-label", t(node.getAttribute("data-i18n-aria-label")));
    });
    els.langSwitch.setAttribute("aria-label", t("languageGroup"));
    els.langSwitch.querySelectorAll("button[data-lang]").forEach(function (button) {
      button.setAttribute("aria-pressed", button.getAttribute("data-lang") === lang ? "true" : "false");
    });
    state.order.forEach(function (id) { renderExchange(state.exchanges[id]); });
    state.notices.forEach(renderNotice);
    updateComposer();
  }

  function setLanguage(lang, remember) {
    lang = normaliseLang(lang) || "en";
    state.lang = lang;
    if (remember) {
      storageSet(window.localStorage, STORAGE_LANG, lang);
      var url = new URL(window.location.href);
      if (url.searchParams.has("lang")) {
        url.searchParams.set("lang", lang);
        window.history.replaceState(null, "", url.toString());
      }
    }
    applyLanguage();
  }

  function userBubble(exchange) {
    var wrap = el("div", exchange.failed ? "message user failed" : "message user");
    wrap.setAttribute("data-testid", "message-user");
    wrap.appendChild(el("span", "visually-hidden", t("you") + ": "));
    wrap.appendChild(el("div", "message-text", exchange.text));
    var meta = el("div", "message-meta");
    if (exchange.failed) {
      meta.appendChild(el("span", "status failed", t("sendFailed")));
    } else if (!exchange.id) {
      meta.appendChild(el("span", "status", t("sending")));
    } else {
      meta.textContent = formatTime(exchange.createdAt);
    }
    wrap.appendChild(meta);
    return wrap;
  }

  function typingIndicator(exchange) {
    var wrap = el("div", exchange.timedOut ? "notice timeout" : "typing");
    if (exchange.timedOut) {
      wrap.setAttribute("data-testid", "message-timeout");
      wrap.textContent = t("timeout");
      return wrap;
    }
    wrap.setAttribute("data-testid", "typing");
    wrap.setAttribute("role", "status");
    wrap.setAttribute("aria-label", t("typing"));
    var dots = el("span", "dots");
    dots.setAttribute("aria-hidden", "true");
    for (var i = 0; i < 3; i += 1) { dots.appendChild(el("span", "dot")); }
    wrap.appendChild(dots);
    wrap.appendChild(el("span", "typing-label", t("typing")));
    return wrap;
  }

  function botBubble(msg) {
    var escalated = msg.status === "escalated";
    var wrap = el("div", escalated ? "message bot escalated" : "message bot answered");
    wrap.setAttribute("data-testid", escalated ? "message-escalated" : "message-bot");
    wrap.setAttribute("data-message-id", msg.message_id);
    wrap.appendChild(el("span", "visually-hidden", t("assistant") + ": "));
    if (escalated) {
      var head = el("div", "message-text escalation-text", t("escalated"));
      wrap.appendChild(head);
      wrap.appendChild(el("div", "escalation-detail", t("escalatedDetail")));
    } else {
      var articles = Array.isArray(msg.articles) ? msg.articles.filter(function (a) {
        return a && typeof a.title === "string" && a.title;
      }) : [];
      var answer = typeof msg.answer === "string" ? msg.answer : "";
      // Answers start with the title of the article they come from: show it as a heading.
      var lead = articles.length ? articles[0].title : null;
      if (lead && answer.indexOf(lead + "\n") === 0) {
        wrap.appendChild(el("div", "answer-title", lead));
        answer = answer.slice(lead.length).replace(/^\s+/, "");
      }
      wrap.appendChild(el("div", "message-text", answer));
      if (articles.length) {
        var box = el("div", "articles");
        box.setAttribute("data-testid", "related-articles");
        box.appendChild(el("div", "articles-title", t("relatedArticles")));
        var list = el("ul", "articles-list");
        articles.forEach(function (article) {
          var item = el("li", "article", article.title);
          if (article.id) { item.setAttribute("data-article-id", article.id); }
          list.appendChild(item);
        });
        box.appendChild(list);
        wrap.appendChild(box);
      }
    }
    var meta = el("div", "message-meta");
    var time = formatTime(parseTime(msg.answered_at));
    if (time) { meta.appendChild(el("span", "time", time)); }
    var confidence = Number(msg.confidence);
    if (!escalated && msg.confidence !== null && msg.confidence !== undefined && isFinite(confidence)) {
      var pct = Math.round(Math.max(0, Math.min(1, confidence)) * 100);
      var conf = el("span", "confidence", t("confidence", { pct: pct }));
      conf.setAttribute("data-testid", "confidence");
      meta.appendChild(conf);
    }
    wrap.appendChild(meta);
    return wrap;
  }

  /** A bot-side element with the assistant's avatar in front of it. */
  function botRow(child) {
    var row = el("div", "bot-row");
    var avatar = el("img", "avatar");
    avatar.setAttribute("src", avatarUrl);
    avatar.setAttribute("alt", "");
    avatar.setAttribute("width", "28");
    avatar.setAttribute("height", "28");
    row.appendChild(avatar);
    row.appendChild(child);
    return row;
  }

  function renderExchange(exchange) {
    var stick = isNearBottom();
    var node = exchange.el;
    while (node.firstChild) { node.removeChild(node.firstChild); }
    node.appendChild(userBubble(exchange));
    var status = exchange.msg ? exchange.msg.status : null;
    if (status === "answered" || status === "escalated") {
      node.appendChild(botRow(botBubble(exchange.msg)));
    } else if (exchange.id && !exchange.failed) {
      node.appendChild(botRow(typingIndicator(exchange)));
    }
    if (stick) { scrollToBottom(); }
  }

  function newExchange(text) {
    var exchange = {
      id: null, text: text, msg: null, failed: false, timedOut: false, key: null, retryNotice: null,
      createdAt: new Date(), watchStart: Date.now(),
      el: el("div", "exchange")
    };
    els.messages.appendChild(exchange.el);
    return exchange;
  }

  function registerExchange(exchange, id) {
    exchange.id = id;
    exchange.el.setAttribute("data-message-id", id);
    if (!state.exchanges[id]) { state.order.push(id); }
    state.exchanges[id] = exchange;
  }

  function renderNotice(notice) {
    var node = notice.el;
    while (node.firstChild) { node.removeChild(node.firstChild); }
    var text = t(notice.key, notice.vars);
    if (notice.retryKey) { text += (state.lang === "zh" ? "" : " ") + t(notice.retryKey, notice.retryVars); }
    node.appendChild(el("div", "notice-text", text));
    if (notice.detail) { node.appendChild(el("div", "notice-detail", notice.detail)); }
  }

  function showNotice(key, options) {
    options = options || {};
    var notice = {
      key: key, vars: options.vars, detail: options.detail,
      retryKey: options.retryAfter ? "retryAfter" : null,
      retryVars: options.retryAfter ? { s: options.retryAfter } : null,
      el: el("div", "notice " + (options.kind || "error"))
    };
    notice.el.setAttribute("data-testid", "notice");
    notice.el.setAttribute("role", options.kind === "info" ? "status" : "alert");
    state.notices.push(notice);
    renderNotice(notice);
    els.messages.appendChild(notice.el);
    scrollToBottom();
    return notice;
  }

  function removeNotice(notice) {
    state.notices = state.notices.filter(function (other) { return other !== notice; });
    if (notice.el.parentNode) { notice.el.parentNode.removeChild(notice.el); }
  }

  function errorNotice(res) {
    var detail = res.data && typeof res.data.detail === "string" ? res.data.detail : null;
    if (res.network) { return showNotice("errorNetwork"); }
    if (res.status === 429) {
      return showNotice("errorRateLimited", { detail: detail, retryAfter: res.retryAfter });
    }
    if (res.status === 503) {
      return showNotice("errorUnavailable", { detail: detail, retryAfter: res.retryAfter });
    }
    return showNotice("errorGeneric", { detail: detail, retryAfter: res.retryAfter });
  }

  function clearConversationView() {
    state.order = [];
    state.exchanges = {};
    state.notices = [];
    Array.prototype.slice.call(els.messages.children).forEach(function (child) {
      if (child !== els.welcome && child.tagName !== "NOSCRIPT") { els.messages.removeChild(child); }
    });
  }

  // --------------------------------------------------------------- composer

  function textLength() {
    return els.input.value.length;
  }

  function updateComposer() {
    var n = textLength();
    els.counter.textContent = t("counter", { n: n, max: maxChars });
    els.counter.classList.toggle("near-limit", n >= maxChars * 0.9);
    els.counter.classList.toggle("over-limit", n > maxChars);
    var blocked = Date.now() < state.blockedUntil;
    els.send.disabled = state.sending || blocked || els.input.value.trim() === "" || n > maxChars;
  }

  function autoGrow() {
    els.input.style.height = "auto";
    els.input.style.height = Math.min(els.input.scrollHeight, 160) + "px";
  }

  function blockSending(seconds) {
    if (!seconds) { return; }
    state.blockedUntil = Date.now() + seconds * 1000;
    updateComposer();
    window.setTimeout(updateComposer, seconds * 1000 + 50);
  }

  function ensureConversation() {
    if (state.conversationId) {
      return Promise.resolve({ ok: true });
    }
    return createConversation();
  }

  function postMessage(exchange, allowRecreate) {
    var headers = { "Idempotency-Key": exchange.key };
    return withRetries(function () {
      return messagesApi("POST", { text: exchange.text, lang: state.lang }, headers);
    }, exchange).then(function (res) {
      if ((res.status === 404 || res.status === 401) && allowRecreate) {
        // The stored conversation expired (TTL), is unknown or its token no longer valid
        // (a new server secret): start a new one once.
        setConversation(null);
        return withRetries(createConversation, exchange).then(function (created) {
          if (!created.ok) { return created; }
          showNotice("conversationExpired", { kind: "info" });
          return postMessage(exchange, false);
        });
      }
      return res;
    });
  }

  function send(text) {
    text = text.replace(/\s+$/, "");
    if (!text.trim() || state.sending) { return; }
    if (text.length > maxChars) {
      showNotice("tooLong", { vars: { max: maxChars } });
      return;
    }
    state.sending = true;
    els.welcome.classList.add("compact");
    var exchange = newExchange(text);
    exchange.key = newIdempotencyKey();  // one per typed message: its retries reuse it
    renderExchange(exchange);
    scrollToBottom();
    els.input.value = "";
    autoGrow();
    updateComposer();

    withRetries(ensureConversation, exchange).then(function (created) {
      if (!created.ok) { return created; }
      return postMessage(exchange, true);
    }).then(function (res) {
      if (res.ok && res.data && res.data.message_id) {
        registerExchange(exchange, res.data.message_id);
        exchange.msg = { message_id: res.data.message_id, status: res.data.status || "pending" };
        exchange.watchStart = Date.now();
        renderExchange(exchange);
        schedulePoll(true);
      } else {
        exchange.failed = true;
        renderExchange(exchange);
        errorNotice(res);
        if (res.status === 429 || res.status === 503) { blockSending(res.retryAfter); }
        if (!els.input.value) { els.input.value = text; autoGrow(); }
      }
    }).catch(function () {
      exchange.failed = true;
      renderExchange(exchange);
      showNotice("errorNetwork");
    }).then(function () {
      state.sending = false;
      updateComposer();
      els.input.focus();
    });
  }

  // ---------------------------------------------------------------- polling

  function hasWatchedPending() {
    return state.order.some(function (id) {
      var ex = state.exchanges[id];
      return ex.msg && ex.msg.status === "pending" && !ex.timedOut;
    });
  }

  function oldestWatchStart() {
    var oldest = Date.now();
    state.order.forEach(function (id) {
      var ex = state.exchanges[id];
      if (ex.msg && ex.msg.status === "pending" && !ex.timedOut) { oldest = Math.min(oldest, ex.watchStart); }
    });
    return oldest;
  }

  function schedulePoll(reset) {
    if (reset) {
      state.pollDelay = POLL_INITIAL_MS;
      state.pollErrors = 0;
    }
    if (state.pollTimer) { window.clearTimeout(state.pollTimer); }
    state.pollTimer = window.setTimeout(poll, reset ? POLL_INITIAL_MS : state.pollDelay);
  }

  function checkTimeouts() {
    var now = Date.now();
    state.order.forEach(function (id) {
      var ex = state.exchanges[id];
      if (ex.msg && ex.msg.status === "pending" && !ex.timedOut && now - ex.watchStart > ANSWER_TIMEOUT_MS) {
        ex.timedOut = true;
        renderExchange(ex);
      }
    });
  }

  function applyServerMessages(messages) {
    messages.forEach(function (msg) {
      if (!msg || !msg.message_id) { return; }
      var ex = state.exchanges[msg.message_id];
      if (!ex) {
        ex = newExchange(msg.text || "");
        ex.createdAt = parseTime(msg.created_at);
        registerExchange(ex, msg.message_id);
        ex.msg = msg;
        renderExchange(ex);
        return;
      }
      var before = ex.msg ? ex.msg.status : null;
      ex.msg = msg;
      if (msg.status !== before) {
        if (msg.status !== "pending") { ex.timedOut = false; }
        renderExchange(ex);
      }
    });
  }

  function poll() {
    state.pollTimer = null;
    if (!state.conversationId) { return; }
    var generation = state.pollGeneration;
    messagesApi("GET")
      .then(function (res) {
        if (generation !== state.pollGeneration) { return; }
        if (res.ok && res.data && Array.isArray(res.data.messages)) {
          state.pollErrors = 0;
          applyServerMessages(res.data.messages);
          var elapsed = Date.now() - oldestWatchStart();
          state.pollDelay = elapsed < POLL_FAST_PERIOD_MS ? POLL_INITIAL_MS
            : Math.min(POLL_MAX_MS, Math.round(state.pollDelay * 1.3));
        } else {
          state.pollErrors += 1;
          var backoff = Math.min(POLL_ERROR_MAX_MS, POLL_INITIAL_MS * Math.pow(2, state.pollErrors));
          state.pollDelay = res.retryAfter ? Math.max(backoff, res.retryAfter * 1000) : backoff;
        }
        checkTimeouts();
        if (hasWatchedPending()) { schedulePoll(false); }
      });
  }

  // ------------------------------------------------------------------ start

  function restoreConversation() {
    var id = storageGet(window.sessionStorage, STORAGE_CONVERSATION);
    var token = storageGet(window.sessionStorage, STORAGE_TOKEN);
    if (!id || !token) { setConversation(null); return; }
    state.conversationId = id;
    state.token = token;
    messagesApi("GET").then(function (res) {
      if (res.ok && res.data && Array.isArray(res.data.messages)) {
        if (res.data.messages.length) { els.welcome.classList.add("compact"); }
        applyServerMessages(res.data.messages);
        scrollToBottom();
        if (hasWatchedPending()) { schedulePoll(true); }
      } else if (res.status === 404 || res.status === 401) {
        setConversation(null);
      }
    });
  }

  function startNewConversation() {
    state.pollGeneration += 1;
    if (state.pollTimer) { window.clearTimeout(state.pollTimer); state.pollTimer = null; }
    setConversation(null);
    clearConversationView();
    els.welcome.classList.remove("compact");
    els.input.value = "";
    autoGrow();
    updateComposer();
    els.input.focus();
  }

  function bind() {
    els.form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!els.send.disabled) { send(els.input.value); }
    });
    els.input.addEventListener("keydown", function (event) {
      // Enter sends, Shift+Enter is a newline; never send while an IME is composing (Chinese input).
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        if (!els.send.disabled) { send(els.input.value); }
      }
    });
    els.input.addEventListener("input", function () {
      autoGrow();
      updateComposer();
    });
    els.langSwitch.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-lang]");
      if (button) { setLanguage(button.getAttribute("data-lang"), true); }
    });
    els.newChat.addEventListener("click", startNewConversation);
    els.messages.addEventListener("click", function (event) {
      var chip = event.target.closest("button[data-suggestion]");
      if (chip && !state.sending && Date.now() >= state.blockedUntil) {
        send(t(chip.getAttribute("data-suggestion")));
      }
    });
  }

  state.lang = initialLang();
  bind();
  applyLanguage();
  restoreConversation();
  body.classList.add("ready");
}());
