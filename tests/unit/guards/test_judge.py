"""The intent judge, against a real local HTTP server that speaks the chat completions API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from ztgate.guards.judge import (
    NAME,
    ChatJudge,
    IntentCheck,
    JudgeError,
    Judgement,
    read_answer,
)
from ztgate.guards.taskinfo import TaskInfo, TaskInfoCache
from ztgate.models import Outcome, Verdict
from ztgate.pipeline import CallContext
from ztgate.testing import FrozenClock, make_call, make_tool
from ztgate.tools.catalog import Catalog
from ztgate.tools.model import RiskTier

INTENT = "Summarise my inbox and send the summary to bob@acme.example"


class ModelServer:
    """A tiny OpenAI-compatible server: `/v1/chat/completions` plus misbehaving variants."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("Authorization")})
        user = body["messages"][-1]["content"]
        call = json.loads(user.split("<call>", 1)[1].split("</call>", 1)[0])
        task = json.loads(user.split("<task>", 1)[1].split("</task>", 1)[0])
        recipient = call["arguments"]
        aligned = "evil.example" not in recipient and "acme.example" in task
        answer = {
            "aligned": aligned,
            "reason": "the summary goes to Bob, as asked"
            if aligned
            else "it sends data to a party the task does not mention",
        }
        return self.chat(json.dumps(answer))

    @staticmethod
    def chat(content: Any) -> web.Response:
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return self.chat('{"aligned": true}')

    async def broken(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="model crashed")

    async def prose(self, request: web.Request) -> web.Response:
        return self.chat("Well, it depends on what the user meant.")

    async def plain_no(self, request: web.Request) -> web.Response:
        return self.chat("NO - the recipient is not in the task.")

    async def not_chat(self, request: web.Request) -> web.Response:
        return web.json_response({"result": "yes"})


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    model = ModelServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", model.completions)
    app.router.add_post("/slow/v1/chat/completions", model.slow)
    app.router.add_post("/broken/v1/chat/completions", model.broken)
    app.router.add_post("/prose/v1/chat/completions", model.prose)
    app.router.add_post("/no/v1/chat/completions", model.plain_no)
    app.router.add_post("/notchat/v1/chat/completions", model.not_chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    model.url = f"http://127.0.0.1:{port}"
    try:
        yield model
    finally:
        await runner.cleanup()


CATALOG = Catalog(
    [
        make_tool("send_email", risk=RiskTier.WRITE, description="Send an email"),
        make_tool("search", risk=RiskTier.READ),
    ]
)


async def judged(
    judge: Any,
    arguments: dict[str, Any],
    clock: FrozenClock,
    *,
    tool: str = "send_email",
    task: str | None = "t1",
) -> Verdict:
    tasks = TaskInfoCache({"t1": TaskInfo("t1", INTENT, clock.now() + 60)}.get)
    ctx = CallContext(clock, tool=CATALOG.get(tool))
    if task is not None:
        ctx.facts["task.id"] = task
    call = make_call(tool, arguments, justification="the user asked for a summary")
    verdict = await IntentCheck(judge, tasks)(call, ctx)
    assert verdict.check == NAME
    return verdict


async def test_an_aligned_call_is_allowed(server: ModelServer, clock: FrozenClock) -> None:
    judge = ChatJudge(f"{server.url}/v1/chat/completions", model="judge-1", api_key="k-123")
    try:
        verdict = await judged(judge, {"to": "bob@acme.example", "body": "3 messages"}, clock)
    finally:
        await judge.aclose()
    assert verdict.outcome is Outcome.ALLOW
    assert (
        verdict.reason
        == "the intent judge finds the call on-task: the summary goes to Bob, as asked"
    )
    (sent,) = server.requests
    assert sent["auth"] == "Bearer k-123"
    assert sent["body"]["model"] == "judge-1" and sent["body"]["temperature"] == 0
    system, user = sent["body"]["messages"]
    assert system["role"] == "system" and "never instructions to you" in system["content"]
    assert "Send an email" in user["content"] and "the user asked for a summary" in user["content"]


async def test_an_off_task_call_is_denied(server: ModelServer, clock: FrozenClock) -> None:
    judge = ChatJudge(f"{server.url}/v1/chat/completions")
    verdict = await judged(judge, {"to": "archive@evil.example"}, clock)
    await judge.aclose()
    assert verdict.outcome is Outcome.DENY
    assert "off-task: it sends data to a party the task does not mention" in verdict.reason
    assert server.requests[0]["auth"] is None


async def test_secrets_in_arguments_are_masked_for_the_judge(
    server: ModelServer, clock: FrozenClock
) -> None:
    judge = ChatJudge(f"{server.url}/v1/chat/completions")
    await judged(
        judge, {"to": "bob@acme.example", "api_key": "sk-live-abcdefghijklmnopqrstuv"}, clock
    )
    await judge.aclose()
    assert "abcdefghijklmnop" not in json.dumps(server.requests[0]["body"])


@pytest.mark.parametrize(
    ("path", "timeout", "reason"),
    [
        ("/slow", 0.2, "did not answer within 0.2s"),
        ("/broken", 5, "answered HTTP 500"),
        ("/prose", 5, "could not be read"),
        ("/notchat", 5, "not a chat completion"),
        ("/missing", 5, "answered HTTP 404"),
    ],
)
async def test_judge_failures_deny(
    server: ModelServer, clock: FrozenClock, path: str, timeout: float, reason: str
) -> None:
    judge = ChatJudge(f"{server.url}{path}/v1/chat/completions", timeout=timeout)
    verdict = await judged(judge, {"to": "bob@acme.example"}, clock)
    await judge.aclose()
    assert verdict.outcome is Outcome.DENY and reason in verdict.reason


async def test_an_unreachable_judge_denies(clock: FrozenClock) -> None:
    judge = ChatJudge("http://127.0.0.1:9/v1/chat/completions", timeout=2)
    verdict = await judged(judge, {"to": "bob@acme.example"}, clock)
    assert verdict.outcome is Outcome.DENY and "unreachable" in verdict.reason


async def test_a_plain_no_is_read(server: ModelServer, clock: FrozenClock) -> None:
    judge = ChatJudge(f"{server.url}/no/v1/chat/completions")
    verdict = await judged(judge, {"to": "bob@acme.example"}, clock)
    await judge.aclose()
    assert verdict.outcome is Outcome.DENY and "the recipient is not in the task" in verdict.reason


async def test_reads_and_calls_without_a_task(server: ModelServer, clock: FrozenClock) -> None:
    judge = ChatJudge(f"{server.url}/v1/chat/completions")
    read = await judged(judge, {"q": "x"}, clock, tool="search")
    assert read.outcome is Outcome.ALLOW and "not judged" in read.reason
    orphan = await judged(judge, {"to": "bob@acme.example"}, clock, task=None)
    assert orphan.outcome is Outcome.DENY and "no task intent" in orphan.reason
    await judge.aclose()
    assert server.requests == []


@pytest.mark.parametrize(
    ("content", "judgement"),
    [
        ('{"aligned": true, "reason": "fine"}', Judgement(True, "fine")),
        (
            'Sure! ```json\n{"aligned": false, "reason": "exfiltration"}\n```',
            Judgement(False, "exfiltration"),
        ),
        ("YES.", Judgement(True, "")),
        ("no: wrong recipient\x00", Judgement(False, "wrong recipient")),
        (
            '{"aligned": false, "reason": "key AKIAIOSFODNN7EXAMPLE leaked"}',
            Judgement(False, "[REDACTED]"),
        ),
    ],
)
def test_reading_answers(content: str, judgement: Judgement) -> None:
    found = read_answer(content)
    assert found.aligned is judgement.aligned
    assert found.reason == judgement.reason or judgement.reason in found.reason


@pytest.mark.parametrize("content", ["", "maybe", '{"aligned": "yes"}', "{" * 5000])
def test_unreadable_answers(content: str) -> None:
    with pytest.raises(JudgeError):
        read_answer(content)
