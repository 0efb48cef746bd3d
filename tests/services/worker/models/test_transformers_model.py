"""The transformers backend on a tiny random Llama built offline, loaded by the real code."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.protocol import ChatMessage, FinishReason, JobKind, SamplingParams
from services.worker.models.base import GenerationRequest, InvalidRequest
from services.worker.models.transformers_model import TransformersModel
from tools.local.stack import Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def model(tiny_model: Path) -> TransformersModel:
    m = TransformersModel(str(tiny_model), max_len=256)
    await m.load()
    return m


def _req(**kw: object) -> GenerationRequest:
    params = SamplingParams(
        temperature=0, max_tokens=kw.pop("max_tokens", 12), stop=kw.pop("stop", [])
    )
    return GenerationRequest(kind=JobKind.GENERATE, params=params, **kw)  # type: ignore[arg-type]


async def test_greedy_generation_is_deterministic_and_bounded(model: TransformersModel) -> None:
    a = await model.generate(_req(prompt="what is ai"))
    b = await model.generate(_req(prompt="what is ai"))
    assert a == b and a.text
    prompt_ids = model.tokenizer("what is ai").input_ids
    assert a.prompt_tokens == len(prompt_ids)
    assert a.completion_tokens is not None and 1 <= a.completion_tokens <= 12
    if a.completion_tokens == 12:
        assert a.finish_reason is FinishReason.LENGTH
    ids = model.tokenizer(a.text, add_special_tokens=False).input_ids
    assert len(ids) <= 12 + 2  # re-tokenising decoded text may merge or split a little


async def test_a_seed_makes_sampling_repeatable(model: TransformersModel) -> None:
    def sampled(seed: int) -> GenerationRequest:
        params = SamplingParams(temperature=1.5, max_tokens=16, seed=seed)
        return GenerationRequest(kind=JobKind.GENERATE, params=params, prompt="what is ai")

    first = await model.generate(sampled(1))
    assert first.text
    assert await model.generate(sampled(1)) == first
    stream = [p async for p in model.stream(sampled(1))]
    assert "".join(p.text for p in stream) == first.text
    others = {(await model.generate(sampled(seed))).text for seed in (2, 3, 4)}
    assert others - {first.text}, "other seeds, other samples"
    assert model.params == {"seed", "top_k", "min_p", "repetition_penalty", "logprobs"}


async def test_top_k_min_p_and_the_repetition_penalty_reach_generate(
    model: TransformersModel,
) -> None:
    greedy = await model.generate(_req(prompt="what is ai", max_tokens=16))
    # Sampling among the one likeliest token is greedy, whatever the temperature and the seed.
    params = SamplingParams(temperature=1.5, max_tokens=16, seed=3, top_k=1)
    one = GenerationRequest(kind=JobKind.GENERATE, params=params, prompt="what is ai")
    assert await model.generate(one) == greedy
    penalised = SamplingParams(temperature=0, max_tokens=16, repetition_penalty=2.0)
    request = GenerationRequest(kind=JobKind.GENERATE, params=penalised, prompt="what is ai")
    assert (await model.generate(request)).text != greedy.text
    # min_p: the same seed samples otherwise once the unlikely tokens are dropped.
    answers = []
    for min_p in (None, 0.95):
        params = SamplingParams(temperature=1.0, max_tokens=16, seed=1, min_p=min_p)
        req = GenerationRequest(kind=JobKind.GENERATE, params=params, prompt="what is ai")
        answers.append((await model.generate(req)).text)
    assert answers[0] != answers[1]


async def test_stream_pieces_add_up_to_generate(model: TransformersModel) -> None:
    req = _req(prompt="hello world", max_tokens=10)
    pieces = [p async for p in model.stream(req)]
    full = await model.generate(req)
    assert "".join(p.text for p in pieces) == full.text
    # The last piece says why it ended and counts the tokens, as generate does.
    last = pieces[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
        full.finish_reason,
        full.prompt_tokens,
        full.completion_tokens,
    )
    # Streamed token by token: one piece per word at least.
    assert len([p for p in pieces if p.text]) >= len(full.text.split()) >= 1


async def test_logprobs_are_the_models_own_streamed_or_not(model: TransformersModel) -> None:
    """Each token's logprob and alternatives equal a forward pass over prompt and answer (the
    raw distribution, before sampling settings); streamed, each piece carries its tokens'."""
    import torch

    params = SamplingParams(temperature=0, max_tokens=10, logprobs=3)
    req = GenerationRequest(kind=JobKind.GENERATE, params=params, prompt="hello world")
    whole = await model.generate(req)
    pieces = [p async for p in model.stream(req)]
    assert whole.logprobs is not None and len(whole.logprobs) == whole.completion_tokens
    assert [lp for p in pieces for lp in p.logprobs or []] == whole.logprobs
    assert all(p.logprobs and len(p.logprobs) == 1 for p in pieces if p.text)
    # Token texts in context add up to the answer.
    assert "".join(lp.token for lp in whole.logprobs) == whole.text

    # transformers called directly: its raw logits at each step.
    prompt = model.tokenizer("hello world", return_tensors="pt")
    with torch.inference_mode():
        out = model.model.generate(
            **prompt,
            max_new_tokens=10,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=model.tokenizer.pad_token_id or model.tokenizer.eos_token_id,
        )
    chosen = out.sequences[0, prompt.input_ids.shape[1] :].tolist()
    assert len(chosen) == len(whole.logprobs)
    for step, token_id, lp in zip(out.logits, chosen, whole.logprobs, strict=True):
        row = step[0].float().log_softmax(-1)
        assert lp.logprob == pytest.approx(float(row[token_id]), abs=1e-4)
        values, ids = row.topk(3)
        assert [v for _, v in lp.top] == pytest.approx(values.tolist(), abs=1e-4)
        assert int(ids[0]) == token_id  # greedy: the chosen token is the likeliest
        if lp.token:  # (a token inside a character has no text of its own)
            assert lp.top[0][0] == lp.token
    # Not asked: none.
    plain = await model.generate(_req(prompt="hello world", max_tokens=10))
    assert plain.logprobs is None and plain.text == whole.text


async def test_stop_word_cuts_the_answer(model: TransformersModel) -> None:
    full = (await model.generate(_req(prompt="the model", max_tokens=20))).text
    stop = full.strip().split()[1] if len(full.split()) > 1 else full.strip()[:2]
    req = _req(prompt="the model", max_tokens=20, stop=[stop])
    for cut in (
        (await model.generate(req)).text,
        "".join([p.text async for p in model.stream(req)]),
    ):
        assert stop not in cut and full.startswith(cut)


async def test_chat_uses_the_chat_template(model: TransformersModel) -> None:
    messages = [ChatMessage(role="user", content="hello")]
    req = GenerationRequest(
        kind=JobKind.CHAT, params=SamplingParams(temperature=0, max_tokens=8), messages=messages
    )
    tokenizer = model.tokenizer
    templated = tokenizer.apply_chat_template(
        [m.model_dump() for m in messages], add_generation_prompt=True, tokenize=False
    )
    assert templated.endswith("<|im_start|>assistant\n")
    answer = await model.generate(req)
    # The prompt the model saw is the template's rendering, not the bare message...
    assert answer.prompt_tokens == len(tokenizer(templated).input_ids)
    assert answer.prompt_tokens > len(tokenizer("hello").input_ids) + 2

    def greedy(text: str) -> str:
        """transformers' own greedy answer to `text`, called directly."""
        enc = tokenizer(text, return_tensors="pt").to(model.model.device)
        out = model.model.generate(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        )
        return str(tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))

    # ...token for token: the answer is the one to that rendering, which the bare message
    # (or the same length of other text) would not get.
    expected = await asyncio.to_thread(greedy, templated)
    assert expected != await asyncio.to_thread(greedy, "hello")
    assert answer.text == expected


async def test_prompt_longer_than_tokens_len_is_refused(tiny_model: Path) -> None:
    m = TransformersModel(str(tiny_model), max_len=8)
    await m.load()
    with pytest.raises(InvalidRequest, match="TOKENS_LEN"):
        await m.generate(_req(prompt="one two three four five six seven eight nine ten"))


def test_worker_serves_the_tiny_model_end_to_end(
    stack: Stack, queue: str, tiny_model: Path
) -> None:
    stack.worker(
        queue,
        MODEL_BACKEND="transformers",
        MODEL_PATH=tiny_model,
        MODEL_NAME="tiny",
        TOKENS_LEN=256,
    )
    url = stack.backend(QUEUE_NAME=queue).url
    body = {"content": "what is ai", "meta": {"model": "tiny", "temperature": 0, "tokens_limit": 8}}
    r1 = httpx.post(url + "/generate", json=body, timeout=60)
    r2 = httpx.post(url + "/generate", json=body, timeout=60)
    assert r1.status_code == 200, r1.text
    assert r1.json() == r2.json() and r1.json()["content"]
    (card,) = httpx.get(url + "/v1/models").json()["data"]
    assert (card["id"], card["max_model_len"]) == ("tiny", 256)
    chat = {
        "messages": [{"role": "user", "content": "hello"}],
        "meta": {"model": "tiny", "tokens_limit": 8},
    }
    assert httpx.post(url + "/chat_completion", json=chat, timeout=60).status_code == 200
    # The client's error (the contract's 422 for bad input), not the model's 502.
    too_long = {"content": "word " * 400, "meta": {"model": "tiny"}}
    r = httpx.post(url + "/generate", json=too_long, timeout=60)
    assert r.status_code == 422 and "TOKENS_LEN" in r.json()["detail"]
    # Logprobs through the queue: an entry per token the worker counted.
    asked = {"model": "tiny", "messages": chat["messages"], "logprobs": True, "top_logprobs": 2}
    r = httpx.post(url + "/v1/chat/completions", json={**asked, "max_tokens": 8}, timeout=60)
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert len(content) == r.json()["usage"]["completion_tokens"]
    assert all(len(t["top_logprobs"]) == 2 for t in content)


class _Watch:
    """Wraps the loaded model's `generate` (the one transformers runs in the thread): how many
    run at once, and how many new tokens each made. Each is made long and slow (a test-side
    stopping criterion sleeps 5 ms a token) so that a caller that gives up finds it running."""

    def __init__(self, model: TransformersModel, monkeypatch: pytest.MonkeyPatch) -> None:
        from transformers import StoppingCriteria, StoppingCriteriaList

        class Slow(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: object, scores: object, **kwargs: object) -> bool:
                time.sleep(0.005)
                return False

        self.running = 0
        self.most = 0
        self.made: list[int] = []
        inner = model.model.generate

        def generate(**kwargs: Any) -> Any:
            kwargs["min_new_tokens"] = kwargs["max_new_tokens"]  # no early end of sequence
            criteria = StoppingCriteriaList(kwargs.pop("stopping_criteria", None) or [])
            criteria.append(Slow())
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                out = inner(**kwargs, stopping_criteria=criteria)
            finally:
                self.running -= 1
            self.made.append(int(out.shape[1]) - int(kwargs["input_ids"].shape[1]))
            return out

        monkeypatch.setattr(model.model, "generate", generate)


async def _consume(model: TransformersModel, req: GenerationRequest) -> None:
    async for _ in model.stream(req):
        pass


@pytest.mark.parametrize("stop", ["deadline", "cancel twice"])
@pytest.mark.parametrize("how", ["generate", "stream"])
async def test_a_job_given_up_stops_the_model_before_the_next_one_starts(
    model: TransformersModel, monkeypatch: pytest.MonkeyPatch, how: str, stop: str
) -> None:
    # The first job is given up (its deadline passes, as the worker's asyncio.timeout does, or
    # it is cancelled, and cancelled again while it unwinds); the second, waiting for the model,
    # must not run beside the first one's generation thread.
    watch = _Watch(model, monkeypatch)
    run = model.generate if how == "generate" else functools.partial(_consume, model)
    left_running: list[int] = []

    async def first_job() -> None:
        try:
            async with asyncio.timeout(0.1 if stop == "deadline" else None):
                await run(_req(prompt="one", max_tokens=200))
        finally:
            left_running.append(watch.running)  # before the second job can take the model

    first = asyncio.ensure_future(first_job())
    second = asyncio.ensure_future(run(_req(prompt="two", max_tokens=3)))
    if stop == "cancel twice":
        await asyncio.sleep(0.1)
        first.cancel()
        await asyncio.sleep(0.002)
        first.cancel()
    with pytest.raises(TimeoutError if stop == "deadline" else asyncio.CancelledError):
        await first
    await second
    assert left_running == [0]  # the first job ended only once its thread had
    assert watch.most == 1
    assert watch.made[0] < 200  # stopped at its next token, not run to the end
    assert watch.made[1] == 3
