"""The echo model's contract: its own input back, truncated to tokens_limit, cut at a stop word."""

from services.common.protocol import ChatMessage, JobKind, SamplingParams
from services.worker.models.base import GenerationRequest, cut_at_stop
from services.worker.models.echo import EchoModel


def _req(text: str, max_tokens: int = 100, stop: list[str] | None = None) -> GenerationRequest:
    return GenerationRequest(
        kind=JobKind.GENERATE,
        params=SamplingParams(max_tokens=max_tokens, stop=stop or []),
        prompt=text,
    )


def test_cut_at_stop_takes_the_earliest_stop_word() -> None:
    assert cut_at_stop("a b STOP c END d", ["END", "STOP"]) == "a b "
    assert cut_at_stop("abc", []) == "abc"
    assert cut_at_stop("abc", [""]) == "abc"


async def test_echo_truncates_and_stops() -> None:
    m = EchoModel()
    assert await m.generate(_req("  one two   three four")) == "  one two   three four"
    assert await m.generate(_req("one two three four", max_tokens=2)) == "one two"
    assert await m.generate(_req("one two. three", stop=["."])) == "one two"


async def test_echo_stream_and_delay_give_the_same_text() -> None:
    slow = EchoModel(token_delay_ms=1)
    req = _req("one two three four", max_tokens=3)
    pieces = [p async for p in slow.stream(req)]
    assert pieces == ["one", " two", " three"]
    assert await slow.generate(req) == await EchoModel().generate(req)


async def test_echo_is_the_same_text_with_or_without_delay() -> None:
    """Simulated speed never changes the answer: text up to a stop word keeps its whitespace,
    as an engine cutting at a stop string would."""
    cases = [
        _req("hello there parrot stop here", max_tokens=6, stop=["stop"]),
        _req("trailing   ", max_tokens=5),
        _req("  lead and trail  ", max_tokens=2),
        _req("a b c", max_tokens=3),
        _req("", max_tokens=3),
    ]
    for req in cases:
        fast = await EchoModel().generate(req)
        assert await EchoModel(token_delay_ms=1).generate(req) == fast, req
        assert "".join([p async for p in EchoModel().stream(req)]) == fast, req
    assert await EchoModel().generate(cases[0]) == "hello there parrot "


async def test_echo_chat_answers_the_last_message() -> None:
    req = GenerationRequest(
        kind=JobKind.CHAT,
        params=SamplingParams(),
        messages=[ChatMessage(role="user", content="q"), ChatMessage(role="user", content="last")],
    )
    assert await EchoModel().generate(req) == "last"
