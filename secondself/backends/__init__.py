"""Model backends. Import the module you need; nothing heavy is imported here (no torch at import time).

- `embedders`: text → vectors (`HashingEmbedder`, the bundled MiniLM via sentence-transformers).
- `chat`: the `ChatModel` protocol, `Message`, `Sampling`, the lazy `Response` / `complete()`, and
  `FakeChatModel` for tests and demos.
- `local`: `LocalChatModel`, transformers in this process (the embedded SmolLM2, a HF directory or a GGUF).
- `openai_compat`: `OpenAIChatModel`, any OpenAI-compatible HTTP endpoint (Ollama, llama.cpp, vLLM, ...).
"""
