"""`python -m server_setup plan`: does the class server fit, and what fits instead.

Table-driven over the issue's cases; the numbers come from the course's estimator (nothing is
loaded, no GPU needed). GiB throughout: a "40 GB" A100 has 40 GiB.
"""

from __future__ import annotations

import json

import pytest
from servers import server_setup_cli

from courselib.errors import CourseError
from courselib.memory import estimate_inference
from server_setup.hardware import Host, detect_host, meminfo_bytes, parse_size
from server_setup.plan import plan
from server_setup.report import refusal, table

GiB = 2**30

# (model, options, fits?, served dtype, engine)
CASES = [
    # the class server's crash: 52 GB of fp32 weights alone exceed 40 GiB x 0.9
    ("wizard-vicuna-13b", {"gpu_mem": "40GiB", "gpus": 1}, False, "fp32", "vllm"),
    ("llama-13b", {"gpu_mem": "80GiB", "dtype": "fp16"}, True, "fp16", "vllm"),
    # 13B fp16 on 40 GiB: 24.2 GiB of weights fit, 16 x 2048 tokens of KV cache (25 GiB) do not
    ("llama-13b", {"gpu_mem": "40GiB", "dtype": "fp16"}, False, "fp16", "vllm"),
    ("wizard-vicuna-13b", {"gpu_mem": "40GiB", "dtype": "awq"}, True, "awq", "vllm"),
    # 65B in 4 bit on one 48 GB card: one 2048-token sequence (its KV cache is 2.5 MiB/token)
    ("llama-65b", {"gpu_mem": "48GiB", "dtype": "awq", "max_seqs": 1}, True, "awq", "vllm"),
    ("llama-65b", {"gpu_mem": "48GiB", "dtype": "Q4_K_M"}, True, "Q4_K_M", "llamacpp"),
    ("llama-7b", {"ram": "16GiB", "dtype": "Q4_K_M"}, True, "Q4_K_M", "llamacpp"),
    ("llama-7b", {"ram": "16GiB"}, True, "Q4_K_M", "llamacpp"),  # a CPU host's default
    ("llama-13b", {"ram": "8GiB"}, False, "Q4_K_M", "llamacpp"),  # Q2_K would
]


@pytest.mark.parametrize(("model", "options", "fits", "dtype", "engine"), CASES)
def test_plan_cases(model, options, fits, dtype, engine):
    p = plan(model, **options)
    assert (p.fits, p.dtype, p.engine) == (fits, dtype, engine)
    assert p.fits == (p.need_bytes <= p.usable_bytes)
    assert bool(p.alternatives) == (not fits)  # every refused case here has a way out
    for option in p.alternatives:
        assert option.need_bytes <= p.usable_bytes


def test_nothing_fits_says_so():
    p = plan("llama-13b", ram="4GiB")  # even Q2_K (4.6 GiB of weights) is too big
    assert not p.fits and p.alternatives == ()
    assert "Nothing smaller fits" in refusal(p)


def test_13b_fp32_on_40gb_refuses_and_lists_what_fits():
    p = plan("wizard-vicuna-13b", gpu_mem="40GiB", gpus=1)
    assert p.estimate.weights / GiB > 36  # the weights alone: 52.1e9 bytes
    changes = [o.change for o in p.alternatives]
    assert "--dtype awq" in changes and "--dtype gptq" in changes
    # fp16 fits with fewer sequences: 24.2 GiB weights + 6 x 1.56 GiB KV + 1.3 GiB
    assert "--dtype fp16 --max-seqs 6" in changes
    assert any(c.startswith("--dtype Q4_K_M") for c in changes)
    tp = [o for o in p.alternatives if "tensor parallel" in o.change]
    assert [o.gpus for o in tp] == [4]  # 2 GPUs: 24.2 + 25 GiB each + 1.4 > 36
    # no shorter context or fewer sequences can make 48.5 GiB of weights fit
    assert not any(c.startswith(("--max-model-len", "--max-seqs")) for c in changes)


def test_fewest_changes_for_13b_fp16_on_40gb():
    p = plan("llama-13b", gpu_mem="40GiB", dtype="fp16")
    by_change = {o.change: o for o in p.alternatives}
    assert by_change["--max-seqs 6"].max_seqs == 6  # the most sequences that fit
    assert not plan("llama-13b", gpu_mem="40GiB", dtype="fp16", max_seqs=7).fits
    assert plan("llama-13b", gpu_mem="40GiB", dtype="fp16", max_seqs=6).fits
    longest = by_change["--max-model-len 768"]
    assert plan("llama-13b", gpu_mem="40GiB", dtype="fp16", max_model_len=768).fits
    assert not plan("llama-13b", gpu_mem="40GiB", dtype="fp16", max_model_len=1024).fits
    assert longest.max_model_len == 768
    assert "--gpus 2 (tensor parallel)" in by_change


def test_plan_uses_the_course_estimator():
    p = plan("llama-13b", gpu_mem="80GiB", dtype="fp16", max_seqs=8, max_model_len=1024)
    same = estimate_inference("llama-13b", precision="fp16", n_ctx=1024, batch=8, engine="vllm")
    assert p.estimate == same
    assert p.estimate.kv_cache == 8 * 1024 * 2 * 40 * 5120 * 2  # K and V, 40 layers, fp16


def test_tensor_parallel_splits_weights_and_kv_per_gpu():
    one = plan("llama-13b", gpu_mem="80GiB", dtype="fp16").estimate
    two = plan("llama-13b", gpu_mem="80GiB", gpus=2, dtype="fp16").estimate
    assert two.weights == -(-one.weights // 2) and two.kv_cache == one.kv_cache // 2
    with pytest.raises(CourseError, match="heads"):
        plan("llama-13b", gpu_mem="80GiB", gpus=3, dtype="fp16")  # 40 heads over 3 GPUs


def test_a_gguf_file_is_planned_from_its_header(tmp_path):
    from memory_tiny import TINY, write_tiny_gguf

    path = write_tiny_gguf(tmp_path / "tiny-F16.gguf", file_type="F16", config=TINY)
    p = plan(path, ram="1GiB")
    from courselib.gguf.read import read_gguf

    assert p.engine == "llamacpp" and p.dtype == "F16"
    assert p.estimate.weights == read_gguf(path).tensor_bytes
    assert p.fits


def test_old_llama_checkpoint_is_accepted_with_a_note(tmp_path):
    config = {
        "architectures": ["LLaMAForCausalLM"],
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "max_sequence_length": 2048,
        "num_attention_heads": 40,
        "num_hidden_layers": 40,
        "vocab_size": 32000,
        "torch_dtype": "float16",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "LLaMATokenizer"}')
    p = plan(tmp_path, gpu_mem="80GiB")
    assert p.fits and p.dtype == "fp16" and p.estimate.params == 13_015_864_320
    assert sum("early LLaMA" in n for n in p.notes) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gpu_mem": "80GiB", "dtype": "nf4"}, "bitsandbytes"),
        ({"ram": "16GiB", "dtype": "fp16"}, "GPU"),
        ({"gpu_mem": "forty"}, "size"),
        ({"gpu_mem": "80GiB", "max_seqs": 0}, "at least 1"),
        ({"gpu_mem": "80GiB", "gpu_memory_utilization": 1.5}, "share"),
    ],
)
def test_mistakes_are_course_errors(options, message):
    with pytest.raises(CourseError, match=message):
        plan("llama-7b", **options)


def test_unknown_architecture_is_refused_not_guessed(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "falcon",
                "hidden_size": 4544,
                "num_hidden_layers": 32,
                "num_attention_heads": 71,
            }
        )
    )
    with pytest.raises(CourseError, match="falcon"):
        plan(tmp_path, gpu_mem="80GiB")


def test_sizes_and_hosts():
    assert parse_size("40GiB") == parse_size("40GB") == parse_size("40") == 40 * GiB
    assert parse_size("16384MiB") == 16 * GiB
    assert detect_host(gpu_mem="48GB", gpus=2) == Host(kind="gpu", device_bytes=48 * GiB, count=2)
    assert detect_host(ram="16GiB").kind == "cpu"


def test_meminfo_reads_available_memory(tmp_path):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       16384000 kB\nMemAvailable:    8192000 kB\n")
    assert meminfo_bytes(info) == 8192000 * 1024
    assert meminfo_bytes(tmp_path / "missing") is None


def test_report_says_what_was_counted_and_why_it_fails():
    p = plan("wizard-vicuna-13b", gpu_mem="40GiB")
    text = table(p)
    assert "weights" in text and "KV cache" in text and "0.90 (--gpu-memory-utilization)" in text
    para = refusal(p)
    assert para.startswith("DOES NOT FIT: wizard-vicuna-13b at fp32 needs")
    assert "--dtype awq" in para
    assert "FITS" in table(plan("llama-13b", gpu_mem="80GiB", dtype="fp16"))


def test_cli_refuses_13b_fp32_on_40gb_with_exit_1():
    run = server_setup_cli(
        "plan", "wizard-vicuna-13b", "--gpu-mem", "40GiB", "--gpus", "1", check=False
    )
    assert run.returncode == 1
    assert "DOES NOT FIT" in run.stderr and "--dtype awq" in run.stderr
    assert "weights" in run.stdout


def test_cli_fits_with_exit_0_and_json():
    run = server_setup_cli(
        "plan", "llama-13b", "--gpu-mem", "80GiB", "--dtype", "fp16", "--json", check=False
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["fits"] and data["engine"] == "vllm" and data["need_bytes"] < data["usable_bytes"]


def test_cli_mistake_exits_2_with_what_to_do():
    run = server_setup_cli("plan", "no-such-model", "--gpu-mem", "40GiB", check=False)
    assert run.returncode == 2
    assert "Unknown model" in run.stderr and "What to do" in run.stderr


def test_cli_help_explains_with_examples():
    run = server_setup_cli("plan", "--help", check=False)
    assert run.returncode == 0
    assert "--gpu-memory-utilization" in run.stdout and "wizard-vicuna-13b" in run.stdout


def test_plan_takes_the_model_as_render_and_up_do():
    args = ("--gpu-mem", "80GiB", "--dtype", "fp16", "--json")
    positional = server_setup_cli("plan", "llama-13b", *args, check=False)
    flag = server_setup_cli("plan", "--model", "llama-13b", *args, check=False)
    assert positional.returncode == flag.returncode == 0 and positional.stdout == flag.stdout
    for wrong in ([], ["llama-13b", "--model", "llama-7b"]):
        run = server_setup_cli("plan", *wrong, "--gpu-mem", "80GiB", check=False)
        assert run.returncode == 2 and "plan needs one model" in run.stderr


def test_plan_reads_the_deployment_settings_as_render_does(tmp_path, monkeypatch):
    from server_setup.cli import main

    settings = tmp_path / "deployment.toml"
    settings.write_text('model = "llama-13b"\ngpu_mem = "80GiB"\ndtype = "fp16"\n')
    flags = server_setup_cli("plan", "llama-13b", "--gpu-mem", "80GiB", "--dtype", "fp16", "--json")
    from_file = server_setup_cli("plan", "--settings", str(settings), "--json")
    assert from_file.stdout == flags.stdout
    # the environment is below a flag and above the file: 40 GiB does not hold fp16 13B + cache
    monkeypatch.setenv("COURSELAB_SERVER_GPU_MEM", "40GiB")
    assert main(["plan", "--settings", str(settings), "--json"]) == 1
    assert main(["plan", "--settings", str(settings), "--gpu-mem", "80GiB", "--json"]) == 0
