"""The plain torch trainer: accumulation, the sign of the update, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="needs the training stack: pip install 'azr[train]'")

import torch
from azr.train import Sample
from azr.train.torch_trainer import TorchTrainer
from transformers import AutoModelForCausalLM

SAMPLES = [
    Sample([5, 6, 7], [8, 9], 1.0),
    Sample([5, 6], [10, 11, 12, 13], -0.5),
    Sample([7], [14], 0.25),
    Sample([5, 6, 7, 8], [9, 10, 11], -1.0),
]


def _model(folder: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _response_logprob(model: torch.nn.Module, s: Sample) -> float:
    ids = torch.tensor([s.prompt_ids + s.response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(s.prompt_ids) - 1 : -1]
    lp = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(s.response_ids)[:, None])
    return float(lp.sum())


def test_micro_batches_do_not_change_the_gradient(tiny_model_dir: Path) -> None:
    grads = []
    for micro in (1, 4):
        model = _model(tiny_model_dir)
        trainer = TorchTrainer(model, lr=1e-3, micro_batch_size=micro, entropy_coef=0.01, grad_clip=1e9)
        metrics = trainer.step(SAMPLES)
        assert metrics["train/response_tokens"] == 10
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_a_positive_advantage_makes_its_response_likelier(tiny_model_dir: Path) -> None:
    model = _model(tiny_model_dir)
    good, bad = Sample([5, 6], [30, 31, 32], 1.0), Sample([5, 6], [40, 41, 42], -1.0)
    before = (_response_logprob(model, good), _response_logprob(model, bad))
    trainer = TorchTrainer(model, lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        trainer.step([good, bad])
    after = (_response_logprob(model, good), _response_logprob(model, bad))
    assert after[0] > before[0] and after[1] < before[1]


def test_gradient_norm_is_clipped(tiny_model_dir: Path) -> None:
    trainer = TorchTrainer(_model(tiny_model_dir), lr=1e-3, grad_clip=1e-3)
    metrics = trainer.step([Sample([5], [6, 7, 8], 100.0), Sample([5], [9], -100.0)])
    assert metrics["train/grad_norm"] > 1e-3  # reported before clipping; the step used the clipped norm


def test_a_step_with_a_nonfinite_gradient_is_skipped(tiny_model_dir: Path) -> None:
    model = _model(tiny_model_dir)
    trainer = TorchTrainer(model, lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = trainer.step([Sample([5], [6, 7], float("nan")), Sample([5], [8], 1.0)])
    assert metrics["train/nonfinite_skipped"] == 1.0
    assert all(p.equal(b) for p, b in zip(model.parameters(), before, strict=True))
    assert not any(trainer.optimizer.state.values())  # Adam's moments untouched too
    metrics = trainer.step(SAMPLES)
    assert metrics["train/nonfinite_skipped"] == 0.0
    assert any(not p.equal(b) for p, b in zip(model.parameters(), before, strict=True))


def test_later_epochs_take_pi_old_from_the_first(tiny_model_dir: Path) -> None:
    """With several epochs the clipped ratio compares against the policy before
    the step; stepping twice with one epoch each would restart it at 1."""
    once = TorchTrainer(_model(tiny_model_dir), lr=0.05)
    m = once.step(SAMPLES)
    assert m["train/approx_kl"] == 0.0 and m["train/clip_fraction"] == 0.0
    m = once.step(SAMPLES)
    assert m["train/approx_kl"] == 0.0  # a new step: on-policy again
    twice = TorchTrainer(_model(tiny_model_dir), lr=0.05)
    m = twice.step(SAMPLES, epochs=2)
    assert m["train/approx_kl"] > 0.0 and m["train/clip_fraction"] > 0.0
    moved = [
        (a - b).abs().max().item()
        for a, b in zip(once.model.parameters(), twice.model.parameters(), strict=True)
    ]
    assert max(moved) > 0.0  # the clip changed the second update


def test_empty_responses_are_skipped(tiny_model_dir: Path) -> None:
    assert TorchTrainer(_model(tiny_model_dir)).step([Sample([1, 2], [], 1.0)]) == {"train/skipped": 1.0}


def test_save_and_load_round_trip(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = _model(tiny_model_dir)
    trainer = TorchTrainer(model, lr=1e-3)
    trainer.step(SAMPLES)
    trainer.save(tmp_path / "ckpt")
    other = TorchTrainer(_model(tiny_model_dir), lr=1e-3)
    other.load(tmp_path / "ckpt")
    for (name, a), b in zip(model.state_dict().items(), other.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert other.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()


def _bf16(folder: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()


def test_bf16_weights_take_updates_below_their_resolution(tiny_model_dir: Path) -> None:
    # At the self-play learning rate (1e-6) an AdamW step (~lr per weight) is below
    # bf16's resolution for most weights: applied to the bf16 weights it would round
    # away. The fp32 master copies must follow the fp32 run's updates instead.
    options = {"lr": 1e-6, "weight_decay": 0.0, "grad_clip": 1e9}
    reference = _model(tiny_model_dir)
    start = {n: p.detach().clone() for n, p in reference.named_parameters()}
    fp32 = TorchTrainer(reference, **options)
    bf16_model = _bf16(tiny_model_dir)
    bf16 = TorchTrainer(bf16_model, **options)
    assert fp32.master is None and bf16.master is not None
    master_start = [m.clone() for m in bf16.master]  # the bf16 weights, exactly, in fp32
    for _ in range(3):
        fp32.step(SAMPLES)
        bf16.step(SAMPLES)
    names = [n for n, _ in bf16_model.named_parameters()]
    want = torch.cat([(p.detach() - start[n]).flatten() for n, p in reference.named_parameters()])
    got = torch.cat([(m - m0).flatten() for m, m0 in zip(bf16.master, master_start, strict=True)])
    moved = want.abs() > 1e-7
    # The setting is one where it matters: most of these updates vanish when rounded to bf16.
    start_all = torch.cat([start[n].flatten() for n in names])
    rounded_away = (start_all + want).to(torch.bfloat16) == start_all.to(torch.bfloat16)
    assert rounded_away[moved].float().mean() > 0.8
    # The master copies took them, in the fp32 run's direction and size.
    assert (torch.sign(got[moved]) == torch.sign(want[moved])).float().mean() > 0.95
    assert 0.8 < float(got.abs().mean() / want.abs().mean()) < 1.25
    # The model holds the master copies rounded to its dtype.
    for (name, p), master in zip(bf16_model.named_parameters(), bf16.master, strict=True):
        assert p.dtype == torch.bfloat16 and torch.equal(p.detach(), master.to(torch.bfloat16)), name


def test_bf16_checkpoint_keeps_the_fp32_master_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = TorchTrainer(_bf16(tiny_model_dir), lr=1e-5)
    trainer.step(SAMPLES)
    trainer.save(tmp_path / "ckpt")
    assert trainer.master is not None
    # A resume loads the bf16 model folder, then the optimizer state with the fp32 copies.
    resumed = TorchTrainer(
        AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "model", dtype=torch.bfloat16), lr=1e-5
    )
    assert resumed.master is not None
    assert any(not torch.equal(a, b) for a, b in zip(resumed.master, trainer.master, strict=True)), (
        "the bf16 weights alone lose the master weights' low bits"
    )
    resumed.load_optimizer(tmp_path / "ckpt")
    for a, b in zip(resumed.master, trainer.master, strict=True):
        assert torch.equal(a, b)
    trainer.step(SAMPLES)
    resumed.step(SAMPLES)
    for a, b in zip(resumed.master, trainer.master, strict=True):
        assert torch.equal(a, b), "the resumed run continues exactly"


def _drift(model: torch.nn.Module, start: list[torch.Tensor]) -> float:
    return float(sum((p.detach() - s).pow(2).sum() for p, s in zip(model.parameters(), start, strict=True)))


def test_a_kl_penalty_holds_the_policy_near_its_reference(tiny_model_dir: Path) -> None:
    from azr.train.batching import KLPenalty

    drift, kls = [], []
    for coef in (0.0, 5.0):
        model = _model(tiny_model_dir)
        start = [p.detach().clone() for p in model.parameters()]
        kl = KLPenalty(coef, _model(tiny_model_dir).requires_grad_(False)) if coef else None
        trainer = TorchTrainer(model, lr=1e-2, weight_decay=0.0, kl=kl)
        kls.append([trainer.step(SAMPLES)["train/kl"] for _ in range(4)])
        drift.append(_drift(model, start))
    assert kls[0] == [0.0] * 4  # no reference, no term
    assert kls[1][0] == pytest.approx(0.0, abs=1e-7)  # the policy starts as its reference
    assert all(k > 0 for k in kls[1][1:])
    assert drift[1] < 0.9 * drift[0], drift


def test_lora_kl_uses_the_policy_with_its_adapters_off(tiny_model_dir: Path) -> None:
    pytest.importorskip("peft", reason="LoRA needs peft: pip install 'azr[train]'")
    from azr.train.batching import KLPenalty
    from azr.train.weights import apply_lora

    model = apply_lora(_model(tiny_model_dir), 4, 16, 0.0, "all-linear")
    trainer = TorchTrainer(model, lr=1e-2, weight_decay=0.0, kl=KLPenalty(1.0, None))
    kls = [trainer.step(SAMPLES)["train/kl"] for _ in range(3)]
    assert kls[0] == pytest.approx(0.0, abs=1e-7) and kls[2] > 0  # adapters start at zero, then move


def test_the_kl_reference_is_the_initial_model_also_on_resume(tiny_model_dir: Path) -> None:
    from azr.config import load_config
    from azr.rl.backends import kl_penalty

    config = load_config(None, [f"model.path={tiny_model_dir}", "model.dtype=float32"])
    trained = _model(tiny_model_dir)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1)  # as if loaded from a later checkpoint
    assert kl_penalty(config, trained) is None  # selfplay.kl_coef: 0
    config.selfplay.kl_coef = 0.05
    penalty = kl_penalty(config, trained)
    initial = _model(tiny_model_dir)
    ref = dict(penalty.reference.named_parameters())
    assert penalty.coef == 0.05
    assert all(torch.equal(p, ref[n]) for n, p in initial.named_parameters())
    assert not any(p.requires_grad for p in ref.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_optimizer_state_still_to_come_is_what_the_first_step_makes(
    tiny_model_dir: Path, dtype: torch.dtype
) -> None:
    # A colocated vLLM engine is sized before the first step: this is what it must leave free.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
    trainer = TorchTrainer(model, lr=1e-3)
    expected = trainer.pending_state_bytes()
    trainer.step([Sample([5, 6, 7], [8, 9], 1.0)])
    made = sum(
        t.numel() * t.element_size()
        for state in trainer.optimizer.state.values()
        for key, t in state.items()
        if key != "step"
    )
    assert expected == made > 0
    assert trainer.pending_state_bytes() == 0
