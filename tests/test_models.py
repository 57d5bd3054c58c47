"""Model sources: the tiny model built offline, and clear errors for bad paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from azr import ConfigError

pytest.importorskip(
    "transformers", reason="model building needs the training stack: pip install 'azr[train]'"
)

from azr.models import build_tiny, resolve


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


def test_tiny_loads_and_generates_offline(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    assert model.config.model_type == "qwen2"
    assert model.config.hidden_size // model.config.num_attention_heads == 64
    prompt = "User: write f\nAssistant: <think>"
    ids = tok([prompt], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**ids, max_new_tokens=5, do_sample=True, pad_token_id=tok.pad_token_id)
    assert out.shape[1] <= ids["input_ids"].shape[1] + 5
    assert tok.decode(tok(prompt)["input_ids"]) == prompt
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat.endswith("<|im_start|>assistant\n")


def test_the_same_seed_builds_the_same_model(tiny: Path, tmp_path: Path) -> None:
    again = build_tiny(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json"):
        assert (
            hashlib.sha256((tiny / name).read_bytes()).digest()
            == hashlib.sha256((again / name).read_bytes()).digest()
        )


def test_resolve_builds_tiny_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZR_CACHE_DIR", str(tmp_path))
    folder, kwargs = resolve("tiny")
    assert Path(folder, "config.json").is_file() and kwargs == {}
    stamp = Path(folder, "model.safetensors").stat().st_mtime_ns
    assert resolve("tiny")[0] == folder
    assert Path(folder, "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in Path(folder).parent.iterdir()] == [Path(folder).name]  # no build left beside


def test_a_tiny_built_differently_gets_its_own_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older azr's build under the same name would pair another tokenizer with
    runs and checkpoints made by this one: the folder is named by what the build
    depends on (here the special tokens stand for any of it)."""
    import azr.models as models

    monkeypatch.setenv("AZR_CACHE_DIR", str(tmp_path))

    def build(out: Path) -> None:  # a stand-in: only the folder's name is under test
        Path(out).mkdir(parents=True)
        Path(out, "config.json").write_text("{}")

    monkeypatch.setattr(models, "build_tiny", build)
    first = resolve("tiny")[0]
    monkeypatch.setattr(models, "SPECIALS", [*models.SPECIALS, "<|extra|>"])
    second = resolve("tiny")[0]
    assert first != second and Path(second, "config.json").is_file()


def test_bad_model_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"without config\.json"):
        resolve(str(tmp_path))
    with pytest.raises(ConfigError, match="not installed"):
        resolve("package:azr_no_such_package")
    assert resolve("Qwen/Qwen2.5-Coder-7B", "main") == ("Qwen/Qwen2.5-Coder-7B", {"revision": "main"})


def test_cli_builds_tiny(tmp_path: Path) -> None:
    from azr.cli import cli
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["model", "tiny", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "model.safetensors").is_file()
    # Never over a folder that holds something (a run, another model).
    stamp = (tmp_path / "m" / "model.safetensors").stat().st_mtime_ns
    again = CliRunner().invoke(cli, ["model", "tiny", "--out", str(tmp_path / "m"), "--seed", "1"])
    assert again.exit_code != 0 and "is not empty" in again.output
    assert (tmp_path / "m" / "model.safetensors").stat().st_mtime_ns == stamp
    huge = CliRunner().invoke(cli, ["model", "tiny", "--out", str(tmp_path / "n"), "--seed", str(2**70)])
    assert huge.exit_code == 2 and "--seed" in huge.output


@pytest.mark.parametrize(("shape", "non_embedding"), [("0.5b", 0.36e9), ("1.5b", 1.31e9)])
def test_stand_in_shapes_are_qwen25s_size(shape: str, non_embedding: float) -> None:
    # Qwen2.5's report gives 0.36B and 1.31B non-embedding parameters for 0.5B and 1.5B.
    import torch
    from azr.models import SHAPES
    from transformers import Qwen2Config, Qwen2ForCausalLM

    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=2048, tie_word_embeddings=True, **SHAPES[shape]))
    counted = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    assert abs(counted - non_embedding) / non_embedding < 0.02, counted


def test_an_unknown_shape_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model shape 'huge'"):
        build_tiny(tmp_path / "m", shape="huge")
    assert not (tmp_path / "m").exists()
