"""The metric arithmetic (TTFT, ITL, tokens/s, queue wait vs generation) and the SSE reader that
feeds it, on recorded streams."""

import pytest
from llmload.llm_metrics import JobTimes, count_tokens, stream_metrics, tokens_per_s
from llmload.sse import StreamReader

# A streamed llm-wrap answer as it came off the wire (echo model, 3 tokens, usage asked for),
# each line with the seconds since the request was sent.
RECORDED = [
    (
        0.010,
        b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,'
        b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],'
        b'"usage":null}',
    ),
    (0.011, b""),
    (
        0.050,
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"What"},'
        b'"finish_reason":null}],"usage":null}',
    ),
    (0.051, b""),
    (
        0.070,
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":" is"},'
        b'"finish_reason":null}],"usage":null}',
    ),
    (
        0.090,
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":" AI?"},'
        b'"finish_reason":null}],"usage":null}',
    ),
    (
        0.100,
        b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        b'"usage":null,"llm_wrap_timings":{"accepted_at":1000.0,"started_at":1000.02,'
        b'"finished_at":1000.09}}',
    ),
    (
        0.101,
        b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,'
        b'"completion_tokens":3,"total_tokens":6}}',
    ),
    (0.102, b"data: [DONE]"),
]


def read(lines: list[tuple[float, bytes | str]]) -> StreamReader:
    reader = StreamReader()
    for t, line in lines:
        reader.feed(t, line)
    return reader


def test_a_recorded_stream_gives_ttft_itl_and_tokens_per_second() -> None:
    rec = read(RECORDED).result()
    assert rec.pieces == [(0.050, "What"), (0.070, " is"), (0.090, " AI?")]
    assert rec.done and rec.finish_reason == "stop" and rec.error is None
    assert rec.usage_tokens == 3
    assert rec.timings == JobTimes(1000.0, 1000.02, 1000.09)
    m = stream_metrics(rec.pieces, 0.102, rec.usage_tokens)
    assert m is not None
    assert m.ttft_s == pytest.approx(0.050)  # the role-only opening chunk is not a token
    assert m.itl_s == pytest.approx((0.090 - 0.050) / 2)
    assert m.output_tokens == 3
    assert m.e2e_s == 0.102
    assert m.tokens_per_s == pytest.approx(3 / 0.102)


def test_itl_counts_tokens_not_events_when_a_server_sends_several_per_event() -> None:
    # 2 events carrying 6 tokens: 5 intervals after the first token, not 1.
    m = stream_metrics([(0.2, "a b c"), (0.7, " d e f")], 0.8, tokens=6)
    assert m is not None
    assert m.ttft_s == 0.2
    assert m.itl_s == pytest.approx(0.5 / 5)
    # Without the server's count, words are counted (the echo model's tokens).
    m = stream_metrics([(0.2, "a b c"), (0.7, " d e f")], 0.8)
    assert m is not None and m.output_tokens == 6


def test_one_token_has_no_itl_and_no_text_has_no_metrics() -> None:
    m = stream_metrics([(0.3, "Hi")], 0.4)
    assert m is not None and m.itl_s is None and m.output_tokens == 1
    assert m.tokens_per_s == pytest.approx(2.5)
    assert stream_metrics([], 0.4) is None
    assert stream_metrics([(0.1, "")], 0.4) is None


def test_tokens_per_second_and_counting() -> None:
    assert tokens_per_s(10, 2.0) == 5.0
    assert tokens_per_s(10, 0.0) == 0.0
    assert count_tokens("  a b\n c  ") == 3
    assert count_tokens("") == 0


def test_job_times_from_headers_split_queue_wait_and_generation() -> None:
    headers = {
        "X-Job-Accepted-At": "100.000000",
        "X-Job-Started-At": "100.250000",
        "X-Job-Finished-At": "101.000000",
    }
    times = JobTimes.from_headers(headers)
    assert times is not None
    assert times.phases() == (pytest.approx(0.25), pytest.approx(0.75))
    # Skew between the backend's and the worker's clocks never shows as a negative wait.
    assert JobTimes(100.0, 99.9, 100.5).phases() == (0.0, pytest.approx(0.6))
    assert JobTimes(100.0, None, None).phases() is None
    assert JobTimes.from_headers({}) is None
    assert JobTimes.from_headers({"X-Job-Accepted-At": "soon"}) is None


def test_errors_sent_in_the_stream_and_odd_lines() -> None:
    rec = read(
        [
            (0.1, ": keep-alive comment"),
            (0.1, "event: message"),
            (0.2, 'data: {"choices":[{"index":0,"text":"plain completion"}]}'),
            (0.3, 'data: {"error":{"message":"the model failed","type":"server_error"}}'),
        ]
    ).result()
    assert rec.pieces == [(0.2, "plain completion")]
    assert rec.error == "server_error" and not rec.done
    assert read([(0.1, "data: {oops")]).result().error is not None
