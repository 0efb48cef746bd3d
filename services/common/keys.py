"""Redis key and channel layout, all under one `REDIS_PREFIX`.

{prefix}:job:{job_id}        hash: status, model, kind, timestamps, tries, content | error,
                             finish_reason, prompt_tokens, completion_tokens (TTL)
{prefix}:notify:{instance}   pub/sub channel of one backend process (results are pushed there)
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
