"""Load test an llm-wrap deployment (or any server with its endpoints) with Locust.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000              # web UI
    locust -f loadtests/locustfile.py --host URL --headless -u 16 -r 16 -t 60s --csv out/run

Users: GenerateUser (`/generate`), ChatUser (`/chat_completion`), OpenAIChatUser (streamed
`/v1/chat/completions`; skipped with a note where `/v1` is missing); name some to run only those.
Options (`--llm-*`, each with an `LLM_WRAP_*` variable) are listed by `locust --help` and in the
web UI. The LLM summary table is printed when Locust quits (by the master in distributed mode).
See docs/loadtests.md.
"""

import logging

from llmload import report, settings
from llmload.users import ChatUser, GenerateUser, OpenAIChatUser, on_test_start
from locust import events
from locust.runners import WorkerRunner

__all__ = ["ChatUser", "GenerateUser", "OpenAIChatUser"]

# Locust's own console logger: plain lines on stdout, beside its statistics table.
console = logging.getLogger("locust.stats_logger")


@events.init_command_line_parser.add_listener
def _options(parser, **_):
    settings.add_arguments(parser)


events.test_start.add_listener(on_test_start)


@events.quitting.add_listener
def _summary(environment, **_):
    if isinstance(environment.runner, WorkerRunner):
        return  # the master has every worker's entries
    rows = report.summarise(
        report.entries_from_stats(environment.stats), report.errors_from_stats(environment.stats)
    )
    console.info("\n%s\n", report.table(rows))
