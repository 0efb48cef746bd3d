"""Redis key and channel layout, all under one `REDIS_PREFIX`.

{prefix}:job:{job_id}        hash: status, model, kind, timestamps, tries, content | error,
                             finish_reason, prompt_tokens, completion_tokens (TTL)
{prefix}:pieces:{job_id}     stream of a streamed job's answer: `t` entries (text), then one
                             `end` entry (the outcome), written by the same script as the record
{prefix}:notify:{instance}   pub/sub channel of one backend process: outcomes (JSON) and, for
                             streamed jobs, the bare job id when new pieces are in its stream
{prefix}:cancel              pub/sub channel: a job id every worker stops (or skips) at once
{prefix}:idem:{hash}         string: job id and body hash of an Idempotency-Key (TTL RESULT_TTL)
{prefix}:models              hash: model name -> JSON announcement (queue, backend, last_seen)
{prefix}:workers:{queue}     sorted set: worker id -> heartbeat expiry (epoch seconds)
{prefix}:registry            pub/sub channel: a worker withdrew (payload: its queue)
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySpace:
    prefix: str

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def pieces(self, job_id: str) -> str:
        return f"{self.prefix}:pieces:{job_id}"

    def idempotency(self, key_hash: str) -> str:
        return f"{self.prefix}:idem:{key_hash}"

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}:cancel"

    def notify_channel(self, instance_id: str) -> str:
        return f"{self.prefix}:notify:{instance_id}"

    @property
    def models(self) -> str:
        return f"{self.prefix}:models"

    @property
    def registry_channel(self) -> str:
        return f"{self.prefix}:registry"

    def workers(self, queue: str) -> str:
        return f"{self.prefix}:workers:{queue}"
