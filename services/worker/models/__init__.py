"""Model backends, chosen by MODEL_BACKEND. Heavy imports happen only for the chosen one."""

from services.worker.config import ModelBackendName, WorkerSettings
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

__all__ = [
    "Generation",
    "GenerationRequest",
    "InvalidRequest",
    "ModelBackend",
    "ModelConfigError",
    "ModelDead",
    "ModelError",
    "Piece",
    "build_model",
]


def build_model(settings: WorkerSettings) -> ModelBackend:
    match settings.MODEL_BACKEND:
        case ModelBackendName.ECHO:
            from services.worker.models.echo import EchoModel

            return EchoModel(settings.ECHO_TOKEN_DELAY_MS)
        case ModelBackendName.TRANSFORMERS:
            from services.worker.models.transformers_model import TransformersModel

            return TransformersModel(settings.MODEL_PATH, settings.TOKENS_LEN)
        case ModelBackendName.OPENAI:
            from services.worker.models.openai_model import OpenAIModel

            return OpenAIModel(
                settings.INNER_LLM_URL,
                settings.INNER_LLM_MODEL or settings.MODEL_NAME,
                api_key=settings.INNER_LLM_API_KEY.get_secret_value(),
            )
        case ModelBackendName.VLLM:
            from services.worker.models.vllm_model import VLLMModel

            return VLLMModel.from_settings(settings)
    raise AssertionError(settings.MODEL_BACKEND)
