"""HTTP bodies: the original protollm-api's (`original`) and OpenAI's (`openai`)."""
