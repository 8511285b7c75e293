"""courselib: the package the course's lab notebooks call.

Organised by concept, one job per module:

- ``courselib.models``   build, convert (HF -> GGUF) and quantize the offline course models
- ``courselib.chat``     conversations and prompt templates (Vicuna v1.1)
- ``courselib.backends`` one interface in front of every inference engine
- ``courselib.memory``   the memory estimator of Lab 03
- ``courselib.widgets``  ipywidgets UIs for the labs
- ``courselib.config``   the one settings mechanism (and its precedence) of the course and tools
- ``courselib.settings`` the course's settings: data dir, threads, the class server

``import courselib`` needs only numpy and tqdm; torch, transformers and llama_cpp load where used.
"""

__version__ = "0.1.0"
