"""The result store: job records in Redis, written so that no reader ever sees a half-done job.

Every transition is one server-side script, so status and answer change together (the original
wrote "completed" before the answer), a final status is never overwritten (first final write wins:
a redelivered duplicate or a late worker after a timeout changes nothing), and the push to the
waiting backend happens in the same step as the write.

The intermediate marks (`pending`, `in_progress`) are written for jobs that live long enough to
be looked at (see `MARK_AFTER_S`); the final write fills in whatever a fast job skipped (created
and started times, tries), so every finished record is complete either way.
"""

from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from services.common import clock
from services.common.keys import KeySpace
from services.common.pipelining import AutoPipeline
from services.common.protocol import ErrorCode, JobMessage, JobOutcome, JobStatus, TokenLogprob

# A job still running after this long gets its pending / in_progress mark written; a faster one
# only gets its final record (one Redis write per job instead of three on the hot path).
MARK_AFTER_S = 0.05

# KEYS[1] job hash. ARGV: ttl, then field/value pairs. Status becomes pending only if unset,
# because the worker may already have finished the job before this write lands.
_CREATE = """
redis.call('HSETNX', KEYS[1], 'status', 'pending')
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] job hash. ARGV: now, ttl, redelivered ('1' or '0'). Returns {status, tries}; a final
# status means "already done". A redelivered job with no tries on record was started before
# without a mark (it died within MARK_AFTER_S, or with its worker): that start counts too.
_START = """
local s = redis.call('HGET', KEYS[1], 'status')
if s == 'completed' or s == 'error' then return {s, 0} end
local add = 1
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], 'tries') == 0 then add = 2 end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', add)
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {'in_progress', tries}
"""

# KEYS[1] job hash, KEYS[2] (optional) the job's piece stream. ARGV: status, now, ttl, field,
# value, channel, payload (the outcome), a JSON array of field/value strings set only where absent
# (what a fast job's skipped marks would have written; one argument instead of a dozen: redis-py
# packs each argument in Python, per job), and whether to end the stream even if it has no pieces.
# The stream's `end` entry is written here, with the record: every final write ends the stream.
# Returns 1 when this write made the job final, 0 when it already was.
_FINISH = """
local s = redis.call('HGET', KEYS[1], 'status')
if s == 'completed' or s == 'error' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2], ARGV[4], ARGV[5])
local fill = cjson.decode(ARGV[8])
for i = 1, #fill, 2 do redis.call('HSETNX', KEYS[1], fill[i], fill[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if KEYS[2] and (ARGV[9] == '1' or redis.call('EXISTS', KEYS[2]) == 1) then
  redis.call('XADD', KEYS[2], '*', 'end', ARGV[7])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return 1
"""

# KEYS[1] the job's piece stream. ARGV: text, ttl, max entries, channel, job id, the text's token
# logprobs as JSON ('' when the job did not ask). The waiting backend is nudged with the bare job
# id and reads the new pieces itself (a reader that comes late, or lost its subscription, reads
# the same stream from its start).
_APPEND = """
if ARGV[6] == '' then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 't', ARGV[1])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 't', ARGV[1], 'l', ARGV[6])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"""

# An answer larger than this is not pushed over pub/sub (the push says to read the record):
# Redis drops a subscriber whose output buffer overflows (32 MB by default), and with it the
# pushes of every other request waiting on that backend.
PUSH_MAX_BYTES = 64 * 1024

# Entries a piece stream keeps (the writer coalesces pieces, so one entry often holds many).
PIECES_MAX = 20_000


# The job hash's fields that make up its JobOutcome (`error_code` is the outcome's `code`).
_OUTCOME_FIELDS = (
    "status",
    "content",
    "error",
    "error_code",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "logprobs",
)


@dataclass(frozen=True, slots=True)
class Delta:
    """One entry of a job's piece stream: new text, and its tokens' logprobs when asked."""

    text: str
    logprobs: list[TokenLogprob] | None = None


def _logprobs_json(logprobs: list[TokenLogprob] | None) -> bytes:
    return orjson.dumps([lp.model_dump() for lp in logprobs]) if logprobs is not None else b""


def parse_logprobs(raw: bytes | str) -> list[TokenLogprob]:
    """A `logprobs` field as stored (a stream entry's, a job record's)."""
    return [TokenLogprob.model_validate(lp) for lp in orjson.loads(raw)]


def _job_fields(job: JobMessage) -> list[str]:
    fields = ["model", job.model, "kind", job.kind.value, "created_at", repr(job.created_at)]
    if job.client_job_id is not None:
        fields += ["client_job_id", job.client_job_id]
    return fields


class ResultStore:
    """Job records and result notifications; one instance per process, over its Redis pool."""

    def __init__(self, redis: Redis, keys: KeySpace, ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self._create = redis.register_script(_CREATE)
        self._start = redis.register_script(_START)
        self._finish = redis.register_script(_FINISH)
        self._append = redis.register_script(_APPEND)
        self._pipe = AutoPipeline(redis)

    async def _eval(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA through the auto-pipeline; a Redis that lost its scripts gets them again."""
        try:
            return await self._pipe.submit("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await script(keys=keys, args=args)

    async def create(self, job: JobMessage) -> None:
        """Record a job as pending (unless a worker already got further)."""
        await self._eval(self._create, [self.keys.job(job.job_id)], [self.ttl, *_job_fields(job)])

    async def start(self, job_id: str, *, redelivered: bool = False) -> tuple[JobStatus, int]:
        """Mark a job in progress; returns its status and how many times it has been started.

        `redelivered`: the broker delivered it before, so it was started at least once already
        even if no try is on record (a first start is only recorded after MARK_AFTER_S).
        """
        status, tries = await self._eval(
            self._start,
            [self.keys.job(job_id)],
            [repr(clock.now()), self.ttl, "1" if redelivered else "0"],
        )
        return JobStatus(status.decode() if isinstance(status, bytes) else status), int(tries)

    async def finish(
        self,
        outcome: JobOutcome,
        notify: str = "",
        *,
        job: JobMessage | None = None,
        started_at: float | None = None,
        end_stream: bool | None = None,
    ) -> bool:
        """Store the final outcome and push it to `notify`; False if the job was already final.

        `job` and `started_at` fill in the record of a job whose marks were skipped.
        `end_stream` adds the `end` entry to the job's piece stream: True always, None only if
        pieces were written, False never. Default: the `job`'s own `stream` flag, else None.
        """
        if outcome.status is JobStatus.COMPLETED:
            field, value = "content", outcome.content or ""
        else:
            field, value = "error", outcome.error or "unknown error"
        if end_stream is None and job is not None:
            end_stream = job.stream
        payload = ""
        if notify or end_stream is not False:
            payload = outcome.model_dump_json()
            if len(payload) > PUSH_MAX_BYTES:
                update = {"content": None, "logprobs": None, "in_record": True}
                payload = outcome.model_copy(update=update).model_dump_json()
        fill: list[str] = []
        if outcome.code is not None:
            fill += ["error_code", outcome.code.value]
        if outcome.finish_reason is not None:
            fill += ["finish_reason", outcome.finish_reason.value]
        if outcome.prompt_tokens is not None:
            fill += ["prompt_tokens", str(outcome.prompt_tokens)]
        if outcome.completion_tokens is not None:
            fill += ["completion_tokens", str(outcome.completion_tokens)]
        if outcome.logprobs is not None:
            fill += ["logprobs", _logprobs_json(outcome.logprobs).decode()]
        if job is not None:
            fill += _job_fields(job)
        if started_at is not None:
            fill += ["started_at", repr(started_at), "tries", "1"]
        args = [
            outcome.status.value,
            repr(clock.now()),
            self.ttl,
            field,
            value,
            notify,
            payload,
            orjson.dumps(fill),
        ]
        keys = [self.keys.job(outcome.job_id)]
        if end_stream is not False:
            keys.append(self.keys.pieces(outcome.job_id))
            args.append("1" if end_stream else "0")
        done = await self._eval(self._finish, keys, args)
        return bool(done)

    async def append(
        self,
        job_id: str,
        text: str,
        notify: str = "",
        logprobs: list[TokenLogprob] | None = None,
    ) -> None:
        """Add a piece of a streamed job's answer, and nudge the backend waiting on `notify`."""
        key = self.keys.pieces(job_id)
        args = [text, self.ttl, PIECES_MAX, notify, job_id, _logprobs_json(logprobs)]
        await self._eval(self._append, [key], args)

    async def read_pieces(
        self, job_id: str, after: str | None = None
    ) -> tuple[str | None, list[Delta], JobOutcome | None]:
        """The pieces written after entry `after` (None: from the start): the last entry read
        (the next call's `after`), the pieces, and the outcome if the stream has ended."""
        start = "-" if after is None else f"({after}"
        rows = await self._pipe.submit("XRANGE", self.keys.pieces(job_id), start, "+")
        pieces: list[Delta] = []
        for entry_id, fields in rows:
            after = entry_id.decode()
            name, value = fields[0], fields[1]
            if name == b"end":
                return after, pieces, parse_outcome(value)
            logprobs = parse_logprobs(fields[3]) if len(fields) > 3 else None
            pieces.append(Delta(value.decode(), logprobs))
        return after, pieces, None

    async def cancel(self, job_id: str, reason: str = "cancelled by the client") -> bool:
        """Fail a job as cancelled and tell every worker to stop it (or skip it when taken).

        False if it had already finished: nothing to cancel.
        """
        outcome = JobOutcome(
            job_id=job_id, status=JobStatus.ERROR, error=reason, code=ErrorCode.CANCELLED
        )
        if not await self.finish(outcome, end_stream=None):
            return False
        await self.stop_workers(job_id)
        return True

    async def stop_workers(self, job_id: str) -> None:
        """Tell every worker to stop the job now, or to skip it when it reaches one."""
        await self.redis.publish(self.keys.cancel_channel, job_id)

    async def aclose(self) -> None:
        """Close the pipeline's own connection (the Redis client's pool is its owner's to close)."""
        await self._pipe.aclose()

    async def claim(self, key_hash: str, job_id: str, body_hash: str) -> tuple[str, str] | None:
        """Claim an idempotency key for `job_id`; if it was taken: (its job id, its body hash)."""
        old = await self.redis.set(
            self.keys.idempotency(key_hash), f"{job_id} {body_hash}", nx=True, get=True, ex=self.ttl
        )
        if not isinstance(old, bytes):  # nil: the key was free, and is ours now
            return None
        taken_job, _, taken_body = old.decode().partition(" ")
        return taken_job, taken_body

    async def release(self, key_hash: str) -> None:
        """Free an idempotency key whose job was never accepted (a retry may then run it)."""
        await self.redis.delete(self.keys.idempotency(key_hash))

    async def answer(self, job_id: str) -> tuple[str | None, list[TokenLogprob] | None]:
        """A finished job's answer and its logprobs (None: not asked), read from its record."""
        raw: list[bytes | None] = await self.redis.hmget(  # type: ignore[assignment]
            self.keys.job(job_id), ["content", "logprobs"]
        )
        content, logprobs = raw
        return (
            content.decode() if content is not None else None,
            parse_logprobs(logprobs) if logprobs is not None else None,
        )

    async def get(self, job_id: str) -> dict[str, str]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self.keys.job(job_id))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def outcomes(self, job_ids: list[str]) -> list[JobOutcome]:
        """The final outcomes among `job_ids` (a sweep for results whose push was missed)."""
        if not job_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), *_OUTCOME_FIELDS)
            rows = await pipe.execute()
        found = []
        for job_id, values in zip(job_ids, rows, strict=True):
            if values[0] in (b"completed", b"error"):
                fields = {
                    k: v.decode()
                    for k, v in zip(_OUTCOME_FIELDS, values, strict=True)
                    if v is not None
                }
                fields["code"] = fields.pop("error_code", None)
                outcome: dict[str, Any] = {"job_id": job_id, **fields}
                if "logprobs" in fields:
                    outcome["logprobs"] = parse_logprobs(fields["logprobs"])
                found.append(JobOutcome.model_validate(outcome))
        return found


def parse_outcome(data: bytes) -> JobOutcome:
    return JobOutcome.model_validate_json(data)
