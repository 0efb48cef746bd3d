"""Which models a run sends to, from GET /v1/models: each queue once, by its first name."""

from typing import Any

from llmload import plan


class Listed:
    def __init__(self, body: Any) -> None:
        self.body = body

    def json(self) -> Any:
        return self.body


def test_aliases_do_not_weigh_a_queue_twice() -> None:
    body = {
        "data": [
            {"id": "echo", "queue": "q1"},
            {"id": "gpt-model", "queue": "q1"},  # an alias of echo
            {"id": "llama", "queue": "q2"},
        ]
    }
    assert plan._one_name_per_queue(Listed(body)) == [("echo", 1.0), ("llama", 1.0)]  # type: ignore[arg-type]


def test_no_listed_model_means_the_default_one() -> None:
    assert plan._one_name_per_queue(Listed({"data": []})) == [(None, 1.0)]  # type: ignore[arg-type]
    assert plan._one_name_per_queue(Listed(["odd"])) == [(None, 1.0)]  # type: ignore[arg-type]
