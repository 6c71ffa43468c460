"""An LLM as a refinement policy: an OpenAI-compatible endpoint or a local GGUF model (llama-cpp-python),
prompted with task templates and few-shot examples the encoder picks; alone or in a hybrid loop with a
fine-tuned stepwise model. Nothing here loads at start-up: the CLI imports it inside the verbs."""
