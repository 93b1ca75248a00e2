"""Sample data shared by tests."""

from desktop.settings import Settings

# Every field away from its default, with non-ASCII and a line break in the text.
EVERY_FIELD_CHANGED = Settings(
    system_prompt="Yanıtları Türkçe ver.\nKısa tut.",
    temperature=0.7,
    top_p=0.5,
    max_tokens=1024,
    repeat_penalty=1.3,
    context_size=8192,
    cpu_threads=1,
    gpu_layers=-1,
    api_enabled=True,
    api_host="0.0.0.0",
    api_port=9000,
    api_key="local-key",
    remote_url="https://example.com",
    remote_api_key="remote-key",
    theme="dark",
)
