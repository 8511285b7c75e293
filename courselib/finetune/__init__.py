"""Fine-tuning with LoRA and QLoRA (Lab 04): data, recipes, models, training, export.

- :mod:`~courselib.finetune.data`     Alpaca / ShareGPT files -> dialogues -> token ids, labels
- :mod:`~courselib.finetune.presets`  the alpaca-lora and qlora recipes as ``LoraSettings``
- :mod:`~courselib.finetune.methods`  a model ready to train: full, LoRA or QLoRA (4-bit base)
- :mod:`~courselib.finetune.train`    ``finetune``: transformers' Trainer, loss history, progress
- :mod:`~courselib.finetune.export`   save / load an adapter, merge it, export a GGUF for llama.cpp
- :mod:`~courselib.finetune.quiet`    the libraries' notices kept off a notebook's stderr

Example (course-chat learns new answers in a few CPU seconds)::

    from courselib.finetune import data, export, methods, train
    from courselib.models import hf_dir

    dialogues = data.load_records("my-data.jsonl")
    tokenizer = data.load_tokenizer(hf_dir("course-chat"))
    model = methods.load_for_training(hf_dir("course-chat"), method="lora")
    result = train.finetune(model, tokenizer, data.encode(tokenizer, dialogues), steps=30)
    merged = export.merge(model, "my-model-hf")
    gguf = export.export_gguf(merged, "my-model-Q4_K_M.gguf")   # open_backend(str(gguf))

torch, transformers, peft and bitsandbytes load inside the functions.
"""
