"""The original's own Python client (ProtoLLM SDK's LLMAPI), unchanged, against this backend."""

from __future__ import annotations

import uuid

import pytest

from tools.local.stack import Stack

llm_api = pytest.importorskip(
    "protollm_sdk.jobs.llm_api", reason="pip install --no-deps protollm-sdk==1.2.0"
)
models = pytest.importorskip("protollm_sdk.models.job_context_models")


# The SDK passes raw bytes as `data=`, which httpx 0.28 deprecates (the SDK pins httpx<0.28).
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
def test_sdk_inference_and_chat_completion(stack: Stack, queue: str) -> None:
    stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue).url
    host, port = url.removeprefix("http://").split(":")
    client = llm_api.LLMAPI(host, int(port), timeout_sec=30)

    meta = models.PromptMeta(temperature=0.5, tokens_limit=5, stop_words=None, model=None)
    prompt = models.PromptModel(job_id=str(uuid.uuid4()), meta=meta, content="hello from the sdk")
    assert client.inference(prompt).content == "hello from the sdk"

    chat = models.ChatCompletionModel.from_prompt_model(prompt)
    assert client.chat_completion(chat).content == "hello from the sdk"

    # The SDK's own way to pick a queue: the `queue_name` query parameter.
    assert client.inference(prompt, queue_name=queue).content == "hello from the sdk"


def test_langchain_connector_chat(stack: Stack, queue: str) -> None:
    """ProtoLLM's LangChain chat model (`ChatRESTServer`) sends `priority: null`,
    `source: "local"`, `stop_words: null` and `model: null` to /chat_completion."""
    connectors = pytest.importorskip(
        "protollm.connectors", reason="pip install --no-deps protollm==0.1.8 (+ the dev extra)"
    )
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    stack.worker(queue)
    url = stack.backend(QUEUE_NAME=queue).url
    llm = connectors.ChatRESTServer(base_url=url, max_tokens=16, temperature=0.3)

    answer = llm.invoke("what does the queue say?")
    assert isinstance(answer, AIMessage)
    assert answer.content == "what does the queue say?"

    # A whole conversation: the echo model answers the last user turn.
    history = [
        SystemMessage(content="be brief"),
        HumanMessage(content="first question"),
        AIMessage(content="first answer"),
        HumanMessage(content="second question"),
    ]
    assert llm.invoke(history).content == "second question"
