"""The typed config: YAML plus dotted overrides, clear errors, presets."""

from __future__ import annotations

from pathlib import Path

import pytest
from azr import ConfigError
from azr.config import Config, dump_config, load_config

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_spec() -> None:
    c = load_config()
    assert (c.selfplay.batch_size, c.selfplay.references, c.selfplay.learnability_rollouts) == (64, 6, 8)
    assert (c.trainer.lr, c.trainer.weight_decay, c.trainer.grad_clip) == (1e-6, 0.01, 1.0)
    assert (c.selfplay.clip_eps, c.selfplay.entropy_coef, c.selfplay.unlearnable_reward) == (0.2, 0.001, -0.5)
    assert (c.rollout.max_prompt_tokens, c.rollout.max_response_tokens) == (6144, 8096)


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  lr: 3e-6\nselfplay:\n  batch_size: 16\n")
    c = load_config(path, ["selfplay.batch_size=32", "buffer.capacity=100", "trainer.betas=[0.9, 0.95]"])
    assert c.trainer.lr == 3e-6 and c.selfplay.batch_size == 32 and c.buffer.capacity == 100
    assert c.trainer.betas == (0.9, 0.95)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["selfplay.batchsize=8"], "did you mean 'selfplay.batch_size'"),
        (["trainr.lr=1"], "did you mean 'trainer'"),
        (["trainer.lr=fast"], "expected a number"),
        (["selfplay.batch_size=2.5"], "expected an integer"),
        (["run.tensorboard=maybe"], "expected true or false"),
        (["rollout.backend=tgi"], "not one of"),
        (["selfplay.batch_size=0"], "at least 1"),
        (["selfplay.induction_visible=10"], "induction_visible"),
        (["noequals"], "key=value"),
        (["trainer=3"], "expected a mapping"),
        (["trainer.zero_stage=4"], "must be 1, 2 or 3"),
        (
            ["trainer.backend=deepspeed", "trainer.zero_stage=3", "trainer.lora_rank=8"],
            "use trainer.zero_stage=2",
        ),
        (["trainer.micro_batch_tokens=-1"], "0 or more"),
        (
            [
                "rollout.backend=hf",
                "trainer.backend=deepspeed",
                "trainer.zero_stage=3",
                "resources.processes=2",
            ],
            "cannot generate with ZeRO-3",
        ),
        (
            ["rollout.backend=vllm", "resources.gpus_per_node=8", "resources.tensor_parallel=2"],
            "resources.colocate=false for engines that span GPUs",
        ),
        (["rollout.gpu_memory_utilization=1.5"], "gpu_memory_utilization"),
        (["resources.comm_timeout_s=0"], "comm_timeout_s"),
        (["run.save_every=0"], "run.save_every must be at least 1"),
        (["run.keep_checkpoints=-1"], "keep_checkpoints 0 or more"),
        # Values that reach Rust as unsigned integers, or crash a run after the model loads.
        (["run.seed=-1"], r"run.seed must be in \[0, 2\*\*64\)"),
        (["run.seed=18446744073709551616"], "run.seed"),
        (["buffer.capacity=-5"], "buffer.capacity must be at least 1"),
        (["buffer.capacity=0"], "buffer.capacity must be at least 1"),
        (["selfplay.references=-1"], "selfplay.references must be 0 or more"),
        (["sandbox.workers=-2"], "sandbox.workers must be 0 or more"),
        (["sandbox.workers=500"], "sandbox.workers must be at most 128"),
        (["sandbox.memory_mb=8"], "sandbox.memory_mb must be at least 32"),
        (["sandbox.max_output_chars=0"], "sandbox.max_output_chars must be at least 1"),
        (["selfplay.seed_factor=0"], "selfplay.seed_factor must be at least 1"),
        (["selfplay.seed_max_rounds=0"], "selfplay.seed_max_rounds must be at least 1"),
        (["rollout.batch_size=0"], "rollout.batch_size must be at least 1"),
        (["rollout.temperature=-0.5"], "rollout.temperature"),
        (["rollout.top_p=0"], "rollout.top_p"),
        (["trainer.betas=[0.9, 1.5]"], "trainer.betas"),
        (["trainer.grad_clip=0"], "trainer.grad_clip must be positive"),
        (["trainer.lora_rank=8", "trainer.lora_dropout=1"], "trainer.lora_dropout"),
        (["selfplay.clip_eps=0"], "selfplay.clip_eps"),
        (["trainer.lr=.nan"], "expected a finite number"),
        (["sandbox.timeout_s=.inf"], "expected a finite number"),
        (["run.eval_limit=0"], "run.eval_limit must be at least 1"),
    ],
)
def test_bad_overrides_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    c = load_config(None, ["model.path=/models/x", "buffer.eviction=reservoir", "run.steps=7"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(c))
    assert load_config(path) == c
    assert load_config(path) != Config()


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_preset_loads(preset: Path) -> None:
    c = load_config(preset)
    assert c.model.path


def test_the_spec_name_of_the_unlearnable_reward_is_accepted(tmp_path: Path) -> None:
    assert load_config(None, ["proposer.unlearnable_reward=0"]).selfplay.unlearnable_reward == 0.0
    path = tmp_path / "c.yaml"
    path.write_text("proposer:\n  unlearnable_reward: 0.0\n")
    assert load_config(path).selfplay.unlearnable_reward == 0.0
    assert load_config().selfplay.unlearnable_reward == -0.5


def test_kl_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigError, match="kl_coef must be 0"):
        load_config(None, ["selfplay.kl_coef=-1"])
    zero3 = [
        "rollout.backend=vllm",
        "trainer.backend=deepspeed",
        "trainer.zero_stage=3",
        "selfplay.kl_coef=0.1",
    ]
    with pytest.raises(ConfigError, match=r"trainer\.zero_stage=2, or LoRA"):
        load_config(None, zero3)
    assert load_config(None, [*zero3[:2], "selfplay.kl_coef=0.1"]).selfplay.kl_coef == 0.1


def test_files_that_are_not_text_or_alias_themselves_are_clear_errors(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe run:\n  steps: 1\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0\)"):
        load_config(binary)
    looped = tmp_path / "looped.yaml"
    looped.write_text("run: &a [*a]\n")
    with pytest.raises(ConfigError, match="alias refers to a node that contains it"):
        load_config(looped)
    with pytest.raises(ConfigError, match="alias refers to a node that contains it"):
        load_config(None, ["run.steps=&x [*x]"])
    shared = tmp_path / "shared.yaml"  # an alias used twice is fine
    shared.write_text("trainer: &t {lr: 2.0e-6}\nrun: {steps: 3}\n")
    assert load_config(shared).trainer.lr == 2e-6


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    """Nine aliases of nine aliases, twelve deep: 9**12 elements if expanded (the
    config reader's number pass and the error's repr both did); in a child with
    2 GiB of address space the error must still come back."""
    import subprocess
    import sys

    value = '&l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    for i in range(1, 12):
        value = f"&l{i} [" + ",".join([value] + [f"*l{i - 1}"] * 8) + "]"
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(f"run:\n  steps: {value}\n")
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from azr.config import load_config\n"
        "try:\n    load_config(sys.argv[1])\n"
        "except Exception as e:\n    print(type(e).__name__, str(e)[:60])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, timeout=120
    )
    assert out.stdout.startswith("ConfigError run.steps: expected an integer, got [[["), (
        out.stdout + out.stderr
    )
