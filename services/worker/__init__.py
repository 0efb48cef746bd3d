"""The model worker: `python -m services.worker` serves one model on its queue."""
