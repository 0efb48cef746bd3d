"""Forward jobs to an OpenAI-compatible server at INNER_LLM_URL (vLLM, TGI, llama.cpp, a vendor)."""

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from services.common.protocol import OPTIONAL_PARAMS, FinishReason, TokenLogprob
from services.worker.models.base import (
    Generation,
    GenerationRequest,
    InvalidRequest,
    ModelBackend,
    ModelError,
    Piece,
    cut_at_stop,
)


class OpenAIModel(ModelBackend):
    # Passed on to the upstream, which speaks the same API (vLLM, TGI, vendors honour them).
    params = frozenset(OPTIONAL_PARAMS)

    def __init__(
        self, base_url: str, model: str, api_key: str = "", timeout: float = 600.0
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout
        self._headers = headers
        self._client: httpx.AsyncClient | None = None

    async def load(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=self._timeout
        )

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        p = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "temperature": p.temperature,
            "max_tokens": p.max_tokens,
        }
        body.update(p.optional_set())
        if p.response_format is not None:
            body["response_format"] = p.response_format
        if p.stop:
            body["stop"] = p.stop
        if request.messages is not None:
            body["messages"] = [m.model_dump() for m in request.messages]
            if p.logprobs is not None:
                body.update(logprobs=True, top_logprobs=p.logprobs)
            return "/chat/completions", body
        body["prompt"] = request.prompt or ""
        if p.logprobs is not None:
            body["logprobs"] = p.logprobs
        return "/completions", body

    async def generate(self, request: GenerationRequest) -> Generation:
        assert self._client is not None, "load() first"
        path, body = self._body(request)
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as e:
            raise ModelError(
                "the upstream model server is unreachable", f"{self.base_url}: {e!r}"
            ) from e
        if response.status_code in (400, 422):
            # The upstream refused what the client asked (its message says why, in OpenAI's
            # error body): the client's error, as the upstream said.
            raise InvalidRequest(
                f"the upstream model refused the request: {_message(response)}",
                f"{self.base_url}{path}: {response.text[:500]}",
            )
        if response.status_code != 200:
            raise ModelError(
                f"the upstream model server answered {response.status_code}",
                f"{self.base_url}{path}: {response.text[:500]}",
            )
        try:
            answer = response.json()
            choice = answer["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
            usage = answer.get("usage") or {}
            logprobs = None
            if request.params.logprobs is not None:
                logprobs = _logprobs(choice.get("logprobs"), request.params.logprobs)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise ModelError(
                "the upstream model server's answer is not in OpenAI's format",
                f"{self.base_url}{path}: {response.text[:200]}",
            ) from e
        full = text or ""
        cut = cut_at_stop(full, request.params.stop)
        cut_short = len(cut) < len(full) or choice.get("finish_reason") != "length"
        return Generation(
            cut,
            FinishReason.STOP if cut_short else FinishReason.LENGTH,
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
            logprobs,
        )

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        # Whole answer as one piece until token streaming is wired through the queue.
        g = await self.generate(request)
        yield Piece(g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens, g.logprobs)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _message(response: httpx.Response) -> str:
    """The message of an OpenAI error body, else the status."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"
    return str(message)[:500]


def _logprobs(given: Any, alternatives: int) -> list[TokenLogprob]:
    """The upstream's logprobs in either of OpenAI's shapes (chat's entries, or a completion's
    parallel lists); a KeyError / TypeError when it sent none or something else."""
    if "content" in given:  # chat
        return [
            TokenLogprob(
                token=entry["token"],
                logprob=entry["logprob"],
                top=[(alt["token"], alt["logprob"]) for alt in entry.get("top_logprobs") or []],
            )
            for entry in given["content"] or []
        ]
    tops = given.get("top_logprobs") or [None] * len(given["tokens"])
    found = []
    for token, logprob, top in zip(given["tokens"], given["token_logprobs"], tops, strict=True):
        likeliest = sorted((top or {}).items(), key=lambda alt: -alt[1])[:alternatives]
        found.append(TokenLogprob(token=token, logprob=logprob, top=likeliest))
    return found


def _count(value: Any) -> int | None:
    """A token count from the upstream's `usage`, if it sent a sane one."""
    return value if isinstance(value, int) and value >= 0 else None
