"""GGUF, llama.cpp's file format, in one place (Labs 01 and 03, the course-model build).

- :mod:`~courselib.gguf.types`     ggml tensor types and GGUF file types, and their sizes
- :mod:`~courselib.gguf.read`      a GGUF file's header: shape, tensor types, bytes (no weights)
- :mod:`~courselib.gguf.convert`   a LLaMA Hugging Face checkpoint -> GGUF F32/F16
- :mod:`~courselib.gguf.quantize`  GGUF -> Q8_0, Q4_0, Q4_K_M ... with llama.cpp's quantizer
- :mod:`~courselib.gguf.mix`       which tensor type llama.cpp gives each tensor of a file type

Light at import time: the ``gguf`` package and llama.cpp load inside the functions.
"""
