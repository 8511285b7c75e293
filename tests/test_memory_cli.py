"""``python -m courselib memory``: text, --json, --table, --list, errors, and a light import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from courselib.__main__ import main


def run_cli(*args: str, capsys) -> tuple[int, str, str]:
    code = main(["memory", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_llama_13b_fp16_2048(capsys):
    code, out, _ = run_cli(
        "--model", "llama-13b", "--dtype", "fp16", "--ctx", "2048", capsys=capsys
    )
    assert code == 0
    assert "13,015,864,320" in out
    assert "weights" in out and "26.03 GB" in out
    assert "kv cache" in out and "1.68 GB" in out  # 2 x 40 x 5120 x 2 B x 2048 = 1.68e9


def test_json_for_scripts(capsys):
    code, out, _ = run_cli(
        "--model", "llama-13b", "--dtype", "fp16", "--ctx", "512", "--json", capsys=capsys
    )
    data = json.loads(out)
    assert code == 0
    assert data["kv_cache"] == 400 * 2**20
    assert data["weights"] == 2 * 13_015_864_320
    assert data["total"] == data["weights"] + data["kv_cache"] + data["overhead"]


@pytest.mark.parametrize(
    ("args", "check"),
    [
        (
            ["--method", "full", "--precision", "bf16", "--model", "llama-65b"],
            lambda d: d["total"] > 780e9,
        ),
        (
            [
                "--method",
                "qlora",
                "--precision",
                "bf16",
                "--model",
                "llama-65b",
                "--ctx",
                "512",
                "--optimizer",
                "paged-adamw-32bit",
                "--lora-rank",
                "64",
                "--lora-targets",
                "all-linear",
                "--grad-ckpt",
            ],
            lambda d: d["total"] < 48e9 and d["trainable_params"] == 799_539_200,
        ),
        (["--method", "lora", "--model", "llama-7b"], lambda d: d["trainable_params"] == 4_194_304),
    ],
)
def test_training_methods(capsys, args, check):
    code, out, _ = run_cli(*args, "--json", capsys=capsys)
    assert code == 0 and check(json.loads(out))


def test_table_and_list(capsys):
    code, out, _ = run_cli("--table", capsys=capsys)
    assert code == 0 and "llama-65b" in out and "261.14" in out  # 65B fp32
    code, out, _ = run_cli("--list", capsys=capsys)
    assert code == 0 and {"llama-7b", "wizard-vicuna-13b", "course-bench"} <= set(out.split())


def test_gguf_path_is_read_from_its_header(tmp_path, capsys):
    from memory_tiny import write_tiny_gguf

    path = write_tiny_gguf(tmp_path / "tiny-Q8_0.gguf", file_type="Q8_0")
    code, out, _ = run_cli(
        "--model", str(path), "--dtype", "Q8_0", "--ctx", "256", "--json", capsys=capsys
    )
    data = json.loads(out)
    assert code == 0 and data["model"] == "tiny-Q8_0.gguf"
    assert (
        data["kv_cache"] == 256 * 2 * 2 * 2 * 64 * 2
    )  # cells x layers x K,V x kv heads x dims x f16


def test_mistakes_are_two_line_errors(capsys):
    code, _, err = run_cli("--model", "llama-99b", capsys=capsys)
    assert code == 2 and "Unknown model 'llama-99b'" in err and "What to do:" in err
    code, _, err = run_cli("--model", "llama-7b", "--dtype", "int3", capsys=capsys)
    assert code == 2 and "Unknown precision 'int3'" in err
    code, _, err = run_cli("--method", "lora", "--lora-targets", "wq", capsys=capsys)
    assert code == 2 and "LoRA target 'wq'" in err


def test_help_and_import_stay_light():
    # --help must not import torch, transformers, pandas or llama_cpp
    code = (
        "import sys, contextlib, io\n"
        "from courselib.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: main(['memory', '--help'])\n"
        "    except SystemExit: pass\n"
        "assert '--json' in out.getvalue() and '--lora-targets' in out.getvalue()\n"
        "heavy = {'torch', 'transformers', 'pandas', 'llama_cpp', 'matplotlib', 'gguf'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
