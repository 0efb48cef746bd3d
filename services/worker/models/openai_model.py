"""Forward jobs to an OpenAI-compatible server at INNER_LLM_URL (vLLM, TGI, llama.cpp, a vendor)."""

from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.worker.models.base import GenerationRequest, ModelBackend, ModelError, cut_at_stop


class OpenAIModel(ModelBackend):
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
        if p.stop:
            body["stop"] = p.stop
        if request.messages is not None:
            body["messages"] = [m.model_dump() for m in request.messages]
            return "/chat/completions", body
        body["prompt"] = request.prompt or ""
        return "/completions", body

    async def generate(self, request: GenerationRequest) -> str:
        assert self._client is not None, "load() first"
        path, body = self._body(request)
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as e:
            raise ModelError(f"upstream {self.base_url} unreachable: {e!r}") from e
        if response.status_code != 200:
            raise ModelError(f"upstream answered {response.status_code}: {response.text[:500]}")
        try:
            choice = response.json()["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ModelError(f"upstream answer not in OpenAI format: {response.text[:200]}") from e
        return cut_at_stop(text or "", request.params.stop)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        # Whole answer as one piece until token streaming is wired through the queue.
        yield await self.generate(request)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
