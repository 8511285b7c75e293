"""``python -m courselib models ...``: build, list, inspect and convert models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from courselib.models.scratch import SEED_TRIES
from courselib.models.specs import COURSE_MODELS, QUANTS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "models",
        help="build, list and convert models",
        description="Build the offline course models, list them, or convert your own checkpoint.",
    )
    cmds = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p = cmds.add_parser(
        "build",
        help="build the course models (a few CPU minutes; cached)",
        description="Make the course models: course-chat from the shipped checkpoint (its "
        "sha256 sums checked; never trained here), course-bench from random weights; convert "
        "them to GGUF (F32, F16), quantize them (Q8_0, Q4_0, Q4_K_M) and check course-chat's "
        "promised answers in this machine's llama.cpp. Skips models whose inputs did not change.",
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"default: all of {', '.join(COURSE_MODELS)}",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.set_defaults(func=_build)

    p = cmds.add_parser(
        "train",
        help="train course-chat from scratch (6-10 CPU minutes; make models never trains)",
        description="Train course-chat from nothing: its tokenizer, then the model until its "
        "quality gate passes (at most TrainSpec.max_steps steps per seed; a seed that misses is "
        f"followed by the next, {SEED_TRIES} seeds in all), then GGUFs and llama.cpp's check of "
        "the promised answers. Writes a model folder (hf/ at fp16, the GGUFs, manifest.json); "
        "chat with it: python -m courselib chat --model OUT/course-chat-Q4_K_M.gguf. Another CPU, seed "
        "or thread count gives other weights: the course ships one checked checkpoint so every "
        "machine runs the same.",
    )
    p.add_argument("name", choices=[n for n, s in COURSE_MODELS.items() if s.weights == "trained"])
    p.add_argument("--seed", type=int, default=0, help="first seed to try (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: settings)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("course-chat-trained"),
        help="model folder to write (default ./course-chat-trained; replaced if it exists)",
    )
    p.add_argument(
        "--ship",
        action="store_true",
        help="maintainers: make this the shipped checkpoint (courselib/data/course-chat) and "
        "its manifest, then commit them",
    )
    p.set_defaults(func=_train)

    p = cmds.add_parser(
        "list", help="list course models and their files (type, size, bits per weight)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_list)

    p = cmds.add_parser("info", help="everything about one course model")
    p.add_argument("name", choices=list(COURSE_MODELS))
    p.set_defaults(func=_info)

    p = cmds.add_parser(
        "convert",
        help="convert your own LLaMA HF checkpoint to GGUF (and quantize it)",
        description="Convert a LLaMA-architecture Hugging Face checkpoint folder (e.g. a real "
        "7B/13B) to GGUF, then optionally quantize it with llama.cpp.",
    )
    p.add_argument(
        "checkpoint", type=Path, help="folder with config.json, tokenizer.model and weights"
    )
    p.add_argument(
        "--out-dir", type=Path, default=None, help="where to write (default: beside the checkpoint)"
    )
    p.add_argument(
        "--type",
        choices=["F32", "F16"],
        default="F16",
        help="float type of the converted file (default F16)",
    )
    p.add_argument(
        "--quant",
        choices=[q for q in QUANTS if q not in ("F32", "F16")],
        action="append",
        default=[],
        help="also quantize to this type (repeatable)",
    )
    p.set_defaults(func=_convert)

    p = cmds.add_parser("clean", help="delete the built course models")
    p.set_defaults(func=_clean)


def _build(args) -> int:
    from courselib.models.build import build_all
    from courselib.models.store import model_root

    for name in args.names:
        model_root(name)  # unknown names fail here with the list of course models
    build_all(args.names or None, force=args.force)
    return 0


def _train(args) -> int:
    import dataclasses

    from courselib.models.scratch import ship, train_checkpoint

    spec = COURSE_MODELS[args.name]
    spec = dataclasses.replace(
        spec, seed=args.seed, train=dataclasses.replace(spec.train, seed=args.seed)
    )
    manifest = train_checkpoint(spec, args.out, threads=args.threads)
    training = manifest["training"]
    print(
        f"{args.out}: seed {training['seed']}, {training['steps']} steps on {training['threads']} "
        f"thread(s), held-out accuracy (Q4_K_M) {manifest['heldout_accuracy_q4_k_m']:.1%}"
    )
    if args.ship:
        shipped = ship(args.out)
        size = sum(f["bytes"] for f in shipped["files"].values())
        print(
            f"shipped: courselib/data/course-chat ({size / 2**20:.1f} MiB); commit it with its manifest"
        )
    return 0


def _rows():
    from courselib.models.store import read_manifest

    for name, spec in COURSE_MODELS.items():
        yield name, spec, read_manifest(name)


def _list(args) -> int:
    print_models(as_json=args.json)
    return 0


def print_models(*, as_json: bool = False) -> None:
    """Print every course model's files: type, size, bits per weight (``models list``, demo)."""
    if as_json:
        print(json.dumps({name: m for name, _, m in _rows()}, indent=2, ensure_ascii=False))
        return
    print(f"{'model':<13} {'params':>9}  {'file':<26} {'type':<7} {'size':>10} {'bits/weight':>11}")
    for name, spec, manifest in _rows():
        if manifest is None:
            print(
                f"{name:<13} {'-':>9}  not built ({spec.description}) -> python -m courselib models build"
            )
            continue
        for quant, f in manifest["files"].items():
            print(
                f"{name:<13} {manifest['params'] / 1e6:>8.1f}M  {f['file']:<26} {quant:<7} "
                f"{f['bytes'] / 1e6:>8.1f}MB {f['bits_per_weight']:>11.2f}"
            )


def _info(args) -> int:
    from courselib.models.store import model_root, read_manifest

    manifest = read_manifest(args.name)
    if manifest is None:
        from courselib.models.store import hf_dir

        hf_dir(args.name)  # raises the "not built" CourseError
    assert manifest is not None  # hf_dir has raised for a model that is not built
    print(f"{args.name}: {manifest['description']}")
    print(f"  folder: {model_root(args.name)}")
    print(f"  parameters: {manifest['params']:,}")
    spec = manifest["spec"]
    print(
        f"  shape: hidden {spec['hidden_size']}, layers {spec['num_layers']}, heads {spec['num_heads']} "
        f"(KV {spec['num_kv_heads']}), ffn {spec['intermediate_size']}, context {spec['context_length']}"
    )
    if "heldout_accuracy_q4_k_m" in manifest:
        print(f"  held-out accuracy (Q4_K_M): {manifest['heldout_accuracy_q4_k_m']:.1%}")
        families = manifest.get("heldout_by_family_q4_k_m", {})
        if families:
            print("    by family: " + ", ".join(f"{k} {v:.0%}" for k, v in families.items()))
    if "training" in manifest:
        training = manifest["training"]
        last = training["gate"][-1]
        gate = ", ".join(f"{k} {v:.0%}" for k, v in last["by_family"].items())
        print(
            f"  trained {training['steps']} steps; quality gate (validation phrasings) passed "
            f"after {len(training['gate'])} check(s): {gate}; "
            f"promised answers {last['promises_kept']}/{last['promises']}"
        )
    print(
        f"  built {manifest['built_at']} (inputs {manifest['inputs_hash']}), timings {manifest['timings_s']}"
    )
    for quant, f in manifest["files"].items():
        types = ", ".join(f"{k}x{v}" for k, v in f["tensor_types"].items())
        print(
            f"  {quant:<7} {f['file']:<26} {f['bytes'] / 1e6:8.1f} MB  {f['bits_per_weight']:5.2f} bits/weight  [{types}]"
        )
    return 0


def _convert(args) -> int:
    from courselib.gguf.convert import convert_hf_to_gguf
    from courselib.gguf.quantize import quantize_gguf
    from courselib.gguf.read import read_gguf

    src = args.checkpoint.expanduser()
    out_dir = (args.out_dir or src.parent).expanduser()
    base = out_dir / f"{src.name}-{args.type}.gguf"
    convert_hf_to_gguf(src, base, out_type=args.type)
    outputs = [base]
    for quant in args.quant:
        outputs.append(quantize_gguf(base, out_dir / f"{src.name}-{quant}.gguf", quant=quant))
    for path in outputs:
        info = read_gguf(path)
        print(
            f"{path}  {info.file_bytes / 1e6:.1f} MB  {8 * info.tensor_bytes / info.n_params:.2f} bits/weight"
        )
    return 0


def _clean(args) -> int:
    import shutil

    from courselib.models.store import models_root

    root = models_root()
    shutil.rmtree(root, ignore_errors=True)
    print(f"removed {root}")
    return 0
