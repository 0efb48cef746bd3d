"""Response headers that say where a job's time went, on every answer (load tests read them).

`X-Job-Accepted-At` is the backend's clock, `X-Job-Started-At` / `X-Job-Finished-At` the worker's
(epoch seconds): started - accepted is the wait in the queue, finished - started the generation.
A streamed answer carries the same times in its finishing chunk (`llm_wrap_timings`): its headers
leave before the job ends.
"""

from services.common.protocol import JobMessage, JobOutcome


def job_headers(job: JobMessage, outcome: JobOutcome) -> dict[str, str]:
    headers = {"X-Job-Id": job.job_id, "X-Job-Accepted-At": f"{job.created_at:.6f}"}
    if outcome.started_at is not None:
        headers["X-Job-Started-At"] = f"{outcome.started_at:.6f}"
    if outcome.finished_at is not None:
        headers["X-Job-Finished-At"] = f"{outcome.finished_at:.6f}"
    return headers
