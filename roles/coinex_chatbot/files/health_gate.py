"""Health gate of a chatbot host (roles/coinex_chatbot/tasks/health.yml runs it on the host).

python3 health_gate.py --ws N --url URL --question Q --expect ARTICLE --timeout S [--no-answer] \
    [--ready-dir DIR] -- SUPERVISORCTL [ARG ...]

Three checks, in this order, against one deadline (start + S seconds); each one fails on its
own, at the latest at the deadline, naming what is wrong:
  programs  `SUPERVISORCTL status coinex_customer_chatbot:*` lists exactly the server and the
            task processes _00 .. _{N-1}, every one RUNNING. A process that is starting is
            waited for; a process STOPPED or FATAL, a missing or an extra one fails as soon as
            it has stayed so for SETTLE_S seconds (supervisord does not change those by itself).
            With --ready-dir, a task process also has to have booted: DIR/NAME.ready (written by
            app/src/coinex_chatbot/worker.py once its knowledge base is loaded) holds its pid. One
            that has not is waited for, so a process that dies while booting, after Supervisor's
            startsecs, is caught: it never writes its pid.
  readyz    GET URL/readyz answers 200.
  answer    a new conversation, the question posted, its message answered through the task
            processes: status "answered" (an escalation fails) and ARTICLE the top article
            (the first id of the message's `articles`, best first). The conversation's calls
            carry the token the create response gave (Authorization: Bearer).
            --no-answer leaves it out, and --question and --expect with it (tasks/probe.yml:
            is the host as a no-op run leaves it?).
Prints one JSON line {"ok", "check", "detail", "seconds"} and exits 0 when every check passed,
1 when one failed (`check` names it), 2 on bad usage. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

GROUP = "coinex_customer_chatbot"
SERVER = f"{GROUP}:coinex_customer_chatbot_server"
TASK = f"{GROUP}:coinex_customer_chatbot_task_"
SETTLED = {"STOPPED", "FATAL", "UNKNOWN", "missing", "unexpected"}
SETTLE_S = 3.0
POLL_S = 1.0  # between two supervisorctl status calls (each starts a Python process)
QUICK_S = 0.1  # between two looks at something cheap: the ready markers, an HTTP answer
PID = re.compile(r"\bpid (\d+)")
STATUS_LINE = re.compile(rf"^({re.escape(GROUP)}:\S+)\s+([A-Z]+)\b\s*(.*)$")


class CheckFailed(Exception):
    def __init__(self, check: str, detail: str) -> None:
        super().__init__(detail)
        self.check = check
        self.detail = detail


class Gate:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.deadline = self.started + args.timeout
        # RUNNING task processes whose ready marker does not hold their pid yet: name -> pid
        self.booting: dict[str, str] = {}
        # the host's own URL: never through a proxy of the environment
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ----- helpers -------------------------------------------------------------------------
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def io_timeout(self, most: float) -> float:
        """Timeout of one request or command: what is left of the deadline, within 1..most s."""
        return max(1.0, min(most, self.remaining()))

    def request(
        self, method: str, path: str, body: dict | None = None, token: str | None = None
    ) -> tuple[int, object]:
        """(status, JSON body or text); status 0 and the error text if nothing answered."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(
            self.args.url.rstrip("/") + path, data=data, method=method, headers=headers
        )
        try:
            with self.opener.open(req, timeout=self.io_timeout(5)) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
            return 0, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.strip()[:200]

    @staticmethod
    def short(value: object) -> str:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 200 else text[:197] + "..."

    # ----- check 1: every program of the group RUNNING --------------------------------------
    def program_states(self) -> tuple[dict[str, str], str]:
        """Problems {name: state and description} of the group, and supervisorctl's own error."""
        wanted = [SERVER] + [f"{TASK}{i:02d}" for i in range(self.args.ws)]
        try:
            proc = subprocess.run(
                [*self.args.supervisorctl, "status", f"{GROUP}:*"],
                capture_output=True,
                text=True,
                timeout=self.io_timeout(15),
                check=False,
            )
            output = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            return {}, "supervisorctl status did not answer in time"
        except OSError as exc:
            return {}, f"cannot run {self.args.supervisorctl[0]}: {exc.strerror}"
        seen: dict[str, tuple[str, str]] = {}
        self.booting = {}
        for line in output.splitlines():
            if m := STATUS_LINE.match(line.strip()):
                seen[m.group(1)] = (m.group(2), m.group(3).strip())
        if not seen:
            said = output.strip() or f"no output, exit {proc.returncode}"
            return {}, f"supervisorctl status: {self.short(said)}"
        problems: dict[str, str] = {}
        for name in wanted:
            state, info = seen.get(name, ("missing", ""))
            if state != "RUNNING":
                problems[name] = f"{state} ({info})" if info else state
            elif name.startswith(TASK) and (not_ready := self.not_ready(name, info)):
                problems[name] = f"BOOTING ({not_ready})"
                self.booting[name] = m.group(1) if (m := PID.search(info)) else "?"
        for name in sorted(set(seen) - set(wanted)):
            problems[name] = f"unexpected ({seen[name][0]})"
        return problems, ""

    def not_ready(self, name: str, info: str) -> str:
        """Why a RUNNING task process is not ready yet ('' when it is, or without --ready-dir)."""
        if self.args.ready_dir is None:
            return ""
        pid = m.group(1) if (m := PID.search(info)) else "?"
        marker = self.marker(name)
        said = self.marker_pid(name)
        if said is None:
            return f"pid {pid}, no {marker} yet"
        return "" if said == pid else f"pid {pid}, {marker} holds pid {said}"

    def marker(self, name: str) -> Path:
        return Path(self.args.ready_dir) / f"{name.split(':', 1)[1]}.ready"

    def marker_pid(self, name: str) -> str | None:
        try:
            return self.marker(name).read_text().strip()
        except OSError:
            return None

    def wait_for_markers(self, seconds: float) -> None:
        """Up to ``seconds``: until every booting task process has written its pid (file reads
        every QUICK_S, so the next status call follows its boot closely instead of up to POLL_S
        later)."""
        until = min(time.monotonic() + seconds, self.deadline)
        while time.monotonic() < until:
            if all(self.marker_pid(name) == pid for name, pid in self.booting.items()):
                return
            time.sleep(QUICK_S)

    def describe(self, problems: dict[str, str]) -> str:
        kinds: dict[str, list[str]] = {}
        for name, state in problems.items():
            kind = state.split()[0]
            if kind == "missing":
                kinds.setdefault(f"missing (WS={self.args.ws})", []).append(name)
            elif kind == "BOOTING":
                kinds.setdefault("not booted (no ready marker)", []).append(
                    f"{name} {state.removeprefix('BOOTING ')}"
                )
            elif kind == "unexpected":
                extra = state.removeprefix("unexpected ").strip("()")
                kinds.setdefault(f"not expected (WS={self.args.ws})", []).append(f"{name} {extra}")
            else:
                kinds.setdefault("not RUNNING", []).append(f"{name} {state}")
        return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in kinds.items())

    def check_programs(self) -> str:
        settled_since: float | None = None
        last: dict[str, str] = {}
        while True:
            problems, error = self.program_states()
            if not problems and not error:
                booted = ", booted" if self.args.ready_dir is not None else ""
                return f"server and {self.args.ws} task processes RUNNING{booted}"
            now = time.monotonic()
            settled = not error and all(s.split()[0] in SETTLED for s in problems.values())
            if not settled or problems != last:
                settled_since = now if settled else None
            last = problems
            stuck = settled_since is not None and now - settled_since >= SETTLE_S
            if stuck or self.remaining() <= 0:
                detail = error or self.describe(problems)
                when = (
                    f"for {SETTLE_S:.0f} s"
                    if stuck
                    else f"after {now - self.started:.1f} s (timeout {self.args.timeout:g} s)"
                )
                raise CheckFailed("programs RUNNING", f"{detail} [{when}]")
            if all(state.startswith("BOOTING") for state in problems.values()):
                self.wait_for_markers(POLL_S)  # only boots to wait for: watch their markers
            else:
                time.sleep(POLL_S)

    # ----- check 2: /readyz ----------------------------------------------------------------
    def check_readyz(self) -> str:
        url = self.args.url.rstrip("/") + "/readyz"
        while True:
            status, body = self.request("GET", "/readyz")
            if status == 200:
                return f"GET {url} 200"
            if self.remaining() <= 0:
                last = f"last status {status}: {self.short(body)}" if status else f"last {body}"
                raise CheckFailed(
                    "GET /readyz 200",
                    f"GET {url} not 200 within {self.args.timeout:g} s, {last}",
                )
            time.sleep(QUICK_S)

    # ----- check 3: the question answered with the expected article ---------------------------
    def call(
        self,
        method: str,
        path: str,
        body: dict | None,
        want: int,
        what: str,
        token: str | None = None,
    ) -> dict:
        """One API call, retried until it answers `want` or the deadline passes."""
        while True:
            status, answer = self.request(method, path, body, token)
            if status == want and isinstance(answer, dict):
                return answer
            if self.remaining() <= 0:
                got = f"status {status}: {self.short(answer)}" if status else str(answer)
                raise CheckFailed(self.answer_check, f"{what} failed ({got}) {self.asked}")
            time.sleep(QUICK_S)

    @property
    def answer_check(self) -> str:
        return "question answered with the expected article"

    @property
    def asked(self) -> str:
        return (
            f'asking "{self.args.question}" (expected article {self.args.expect})'
            f" at {self.args.url.rstrip('/')}"
        )

    def check_answer(self) -> str:
        base = "/api/v1/conversations"
        conv = self.call("POST", base, {"lang": "en"}, 201, f"POST {base}")
        cid, token = conv.get("conversation_id"), conv.get("token")
        messages_path = f"{base}/{cid}/messages"
        question = {"text": self.args.question}
        posted = self.call("POST", messages_path, question, 202, f"POST {messages_path}", token)
        mid = posted.get("message_id")
        while True:
            status, listing = self.request("GET", messages_path, token=token)
            mine = [
                m
                for m in (listing.get("messages", []) if isinstance(listing, dict) else [])
                if m.get("message_id") == mid
            ]
            msg = mine[0] if mine else None
            if msg is not None and msg.get("status") != "pending":
                break
            if self.remaining() <= 0:
                why = (
                    "still pending: no task process took it"
                    if msg is not None
                    else f"GET {messages_path}: status {status}: {self.short(listing)}"
                )
                raise CheckFailed(
                    self.answer_check,
                    f"{self.asked}: not answered within {self.args.timeout:g} s ({why})",
                )
            time.sleep(QUICK_S)
        articles = [a.get("id") for a in msg.get("articles") or [] if isinstance(a, dict)]
        top = articles[0] if articles else None
        listed = ", ".join(map(str, articles)) or "none"
        outcome = (
            f"{self.asked}: {msg.get('status')}, top article {top or 'none'}"
            f" (articles {listed}, confidence {msg.get('confidence')})"
        )
        if msg.get("status") != "answered" or top != self.args.expect:
            raise CheckFailed(self.answer_check, outcome)
        return f'"{self.args.question}" answered with {top} (confidence {msg.get("confidence")})'

    def run(self) -> dict:
        try:
            passed = [self.check_programs(), self.check_readyz()]
            if not self.args.no_answer:
                passed.append(self.check_answer())
        except CheckFailed as failed:
            return {"ok": False, "check": failed.check, "detail": failed.detail}
        return {"ok": True, "check": "all", "detail": "; ".join(passed)}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="health_gate.py", description=__doc__.split("\n")[0])
    parser.add_argument("--ws", type=int, required=True, help="task processes expected")
    parser.add_argument("--url", required=True, help="base URL of the host's uWSGI")
    parser.add_argument("--question", default="")
    parser.add_argument("--expect", default="", help="article id the answer must have on top")
    parser.add_argument("--timeout", type=float, default=30, help="seconds for the whole gate")
    parser.add_argument("--no-answer", action="store_true", help="programs and /readyz only")
    parser.add_argument("--ready-dir", help="where the task processes write their ready markers")
    parser.add_argument("supervisorctl", nargs="+", help="supervisorctl argv, after --")
    args = parser.parse_args(argv)
    unasked = not (args.question.strip() and args.expect.strip())
    if args.ws < 1 or args.timeout <= 0 or (unasked and not args.no_answer):
        parser.error("--ws and --timeout must be positive, --question and --expect non-empty")
    return args


def main(argv: list[str]) -> int:
    if "--" not in argv:
        sys.stderr.write(__doc__)
        return 2
    args = parse(argv)
    gate = Gate(args)
    result = gate.run()
    result["seconds"] = round(time.monotonic() - gate.started, 1)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
