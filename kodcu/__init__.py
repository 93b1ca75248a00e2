"""Shared pieces of Kodcu that every tool may import without heavy dependencies.

What two tools share lives here, once, below both: the chat layout and thread
default for llama.cpp (`kodcu.llama`), the model-file checks (`kodcu.model_file`,
`kodcu.gguf_header`), the sandbox that runs generated code (`kodcu.sandbox`), the
prompt templates, the default model and the user folders. A tool imports this
package and never another tool.

No module here imports Qt or torch, and none imports llama_cpp when it is
imported: `kodcu.llama` imports it inside the functions that are handed a
loaded model. The desktop, trainer, converter and evaluation tools all stand on it.
"""

__version__ = "0.1.0"
