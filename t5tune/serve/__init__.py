"""`t5tune serve`: an HTTP inference server (OpenAI-compatible completions, scoring, metrics) on t5tune.infer."""
