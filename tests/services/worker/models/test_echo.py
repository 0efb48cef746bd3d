"""The echo model's contract: its own input back, truncated to tokens_limit, cut at a stop word."""

import random

from services.common.protocol import ChatMessage, FinishReason, JobKind, SamplingParams
from services.worker.models.base import (
    FIND_EACH_MAX,
    Generation,
    GenerationRequest,
    Piece,
    cut_at_stop,
)
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


def test_cut_at_stop_with_many_words_agrees_with_searching_each() -> None:
    # More than FIND_EACH_MAX words take the one-pass automaton: same answers as a find per word.
    def each(text: str, stop: list[str]) -> str:
        found = [i for i in (text.find(w) for w in stop if w) if i >= 0]
        return text[: min(found, default=len(text))]

    rnd = random.Random(7)
    for n in (FIND_EACH_MAX, FIND_EACH_MAX + 1, 60):
        for _ in range(300):
            alphabet = rnd.choice(["ab", "abc.", "xyzé"])
            text = "".join(rnd.choices(alphabet, k=rnd.randint(0, 80)))
            stop = ["".join(rnd.choices(alphabet, k=rnd.randint(0, 7))) for _ in range(n)]
            assert cut_at_stop(text, stop) == each(text, stop), (text, stop)
    words = [f"w{i:03d}" for i in range(100)]
    assert cut_at_stop("x w0 w050 w007", words) == "x w0 "
    assert cut_at_stop("aaaab", ["a" * k + "b" for k in range(1, 40)]) == ""


async def _text(m: EchoModel, req: GenerationRequest) -> str:
    return (await m.generate(req)).text


async def test_echo_truncates_and_stops() -> None:
    m = EchoModel()
    assert await _text(m, _req("  one two   three four")) == "  one two   three four"
    assert await _text(m, _req("one two three four", max_tokens=2)) == "one two"
    assert await _text(m, _req("one two. three", stop=["."])) == "one two"


async def test_echo_counts_words_as_tokens_and_says_why_it_ended() -> None:
    for m in (EchoModel(), EchoModel(token_delay_ms=1)):
        assert await m.generate(_req("one two three four", max_tokens=2)) == Generation(
            "one two", FinishReason.LENGTH, 4, 2
        )
        assert await m.generate(_req("one two. three", stop=["."])) == Generation(
            "one two", FinishReason.STOP, 3, 2
        )
        assert await m.generate(_req("a b c", max_tokens=3)) == Generation(
            "a b c", FinishReason.STOP, 3, 3
        )


async def test_echo_stream_and_delay_give_the_same_text() -> None:
    slow = EchoModel(token_delay_ms=1)
    req = _req("one two three four", max_tokens=3)
    pieces = [p async for p in slow.stream(req)]
    assert pieces == [
        Piece("one"),
        Piece(" two"),
        Piece(" three"),
        Piece("", FinishReason.LENGTH, 4, 3),
    ]
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
        assert "".join([p.text async for p in EchoModel().stream(req)]) == fast.text, req
    assert await _text(EchoModel(), cases[0]) == "hello there parrot "


async def test_echo_chat_answers_the_last_message() -> None:
    req = GenerationRequest(
        kind=JobKind.CHAT,
        params=SamplingParams(),
        messages=[ChatMessage(role="user", content="q"), ChatMessage(role="user", content="last")],
    )
    assert await _text(EchoModel(), req) == "last"
