#!/usr/bin/env python3
"""Generate the SAELens *training* reference fixtures (losses, gradients, LR / coefficient
schedules, Adam steps, whole trainer steps) that saescope's Rust trainer tests compare against.

Usage (from the repository root):

    bash scripts/setup_golden_venv.sh           # pinned torch / sae-lens
    .venv-golden/bin/python scripts/make_train_goldens.py

Everything runs offline, on CPU, in float32 (the batchtopk threshold is float64, as in SAELens), and
is deterministic (fixed seeds, torch.use_deterministic_algorithms, one thread; safetensors headers
rewritten with sorted keys by make_goldens.canonicalize_safetensors_header).

What it writes (all under tests/fixtures/train/, see the README.md there for every key):

  losses/<case>.safetensors    one TrainingSAE (d_in 8, d_sae 24, seeded non-trivial params) and one
                               batch x [32, 8]: SAELens's training_forward_pass outputs (every loss
                               term, total loss, feature_acts, hidden_pre, sae_out), the gradient of
                               the total loss w.r.t. every parameter after backward (before
                               clipping), the gradients after clip_grad_norm_(1.0), and for batchtopk
                               the topk_threshold before / after the EMA update and the JumpReLU
                               weights that save_inference_model would write.
  schedules.json               lr per step from sae_lens.training.optim.get_lr_scheduler, and the
                               coefficient warm-up values from CoefficientScheduler.
  adam_step.safetensors        clip_grad_norm_(1.0) + torch.optim.Adam, 3 steps from fixed params and
                               fixed grads (as SAETrainer builds it).
  trainer/<case>.safetensors   a real SAETrainer driven like SAETrainer.fit for a few steps on fixed
                               batches: params after every step, lr / coefficients used, dead-latent
                               counters, losses.
  norm_scaling.safetensors     ActivationScaler.estimate_scaling_factor and
                               fold_activation_norm_scaling_factor for every architecture.
  config_defaults.json         LanguageModelSAERunnerConfig / SAETrainerConfig / training SAE config
                               defaults as SAELens resolves them.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_goldens as mg  # noqa: E402  (canonicalize_safetensors_header, human)

from sae_lens.config import LoggingConfig, SAETrainerConfig  # noqa: E402
from sae_lens.saes import (  # noqa: E402
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    GatedTrainingSAE,
    GatedTrainingSAEConfig,
    JumpReLUTrainingSAE,
    JumpReLUTrainingSAEConfig,
    StandardTrainingSAE,
    StandardTrainingSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
)
from sae_lens.saes.sae import TrainStepInput  # noqa: E402
from sae_lens.training.optim import CoefficientScheduler, get_lr_scheduler  # noqa: E402
from sae_lens.training.sae_trainer import SAETrainer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "train"
D_IN, D_SAE, BATCH = 8, 24, 32

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

VERSIONS = {"sae_lens": md.version("sae-lens"), "torch": torch.__version__.split("+")[0]}


# --------------------------------------------------------------------------------------------
# helpers


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous().clone()


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    smeta = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in meta.items()}
    smeta.update(VERSIONS)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path), metadata=smeta)
    mg.canonicalize_safetensors_header(path)
    path.chmod(0o644)
    print(f"wrote {rel(path)}: {len(tensors)} tensors, {mg.human(path.stat().st_size)}")


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    path.chmod(0o644)
    print(f"wrote {rel(path)} ({mg.human(path.stat().st_size)})")


def seeded_params(sae: Any, g: torch.Generator, arch: str) -> None:
    """Overwrite SAELens's init with seeded, non-trivial values: decoder row norms in [0.5, 2]
    (so every ||W_dec||-weighted term matters), non-zero biases, some latents inactive."""
    with torch.no_grad():
        w = torch.randn(D_SAE, D_IN, generator=g)
        norms = 0.5 + 1.5 * torch.rand(D_SAE, generator=g)
        sae.W_dec.copy_(w / w.norm(dim=-1, keepdim=True) * norms[:, None])
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=g) / D_IN**0.5)
        sae.b_dec.copy_(0.2 * torch.randn(D_IN, generator=g))
        if arch == "gated":
            sae.b_gate.copy_(0.3 * torch.randn(D_SAE, generator=g) - 0.1)
            sae.b_mag.copy_(0.3 * torch.randn(D_SAE, generator=g))
            sae.r_mag.copy_(0.3 * torch.randn(D_SAE, generator=g))
        else:
            sae.b_enc.copy_(0.3 * torch.randn(D_SAE, generator=g) - 0.2)
        if arch == "jumprelu":
            sae.threshold.copy_(0.05 + 0.55 * torch.rand(D_SAE, generator=g))


def param_names(sae: Any) -> list[str]:
    return [n for n, _ in sae.named_parameters()]


def make_sae(arch: str, cfg_kwargs: dict[str, Any]) -> Any:
    cls, cfg_cls = {
        "standard": (StandardTrainingSAE, StandardTrainingSAEConfig),
        "gated": (GatedTrainingSAE, GatedTrainingSAEConfig),
        "jumprelu": (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig),
        "topk": (TopKTrainingSAE, TopKTrainingSAEConfig),
        "batchtopk": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig),
    }[arch]
    return cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, **cfg_kwargs))


# --------------------------------------------------------------------------------------------
# 1. losses and gradients of one training_forward_pass

# name -> (arch, cfg kwargs, coefficients passed in TrainStepInput, dead latent indices, extras)
LOSS_CASES: dict[str, tuple[str, dict[str, Any], dict[str, float], list[int], dict[str, Any]]] = {
    "standard": ("standard", {"l1_coefficient": 0.7}, {"l1": 0.7}, [3, 17], {}),
    "standard_lp2": ("standard", {"l1_coefficient": 0.7, "lp_norm": 2.0}, {"l1": 0.35}, [], {}),
    "gated": ("gated", {"l1_coefficient": 0.6}, {"l1": 0.6}, [5], {}),
    "jumprelu_step": (
        "jumprelu", {"l0_coefficient": 0.05, "jumprelu_bandwidth": 0.2,
                     "jumprelu_sparsity_loss_mode": "step"}, {"l0": 0.05}, [],
        {"negative_threshold_at": 7}),
    "jumprelu_step_ste_preact": (
        "jumprelu", {"l0_coefficient": 0.05, "jumprelu_bandwidth": 0.2,
                     "jumprelu_sparsity_loss_mode": "step", "jumprelu_ste_to_input": True,
                     "pre_act_loss_coefficient": 0.03}, {"l0": 0.05}, [1, 4, 9, 20], {}),
    "jumprelu_tanh_preact": (
        "jumprelu", {"l0_coefficient": 0.05, "jumprelu_bandwidth": 0.2,
                     "jumprelu_sparsity_loss_mode": "tanh", "jumprelu_tanh_scale": 4.0,
                     "pre_act_loss_coefficient": 0.03}, {"l0": 0.05}, [0, 2, 11, 19, 23], {}),
    "jumprelu_quadratic": (
        "jumprelu", {"l0_coefficient": 0.05, "jumprelu_bandwidth": 0.2,
                     "jumprelu_sparsity_loss_mode": "quadratic", "target_l0": 4.0},
        {"l0": 0.05}, [], {}),
    "topk": ("topk", {"k": 4, "aux_loss_coefficient": 0.5}, {},
             [0, 2, 5, 7, 11, 13, 19], {}),
    "topk_fewdead": ("topk", {"k": 4, "aux_loss_coefficient": 0.5}, {}, [6, 21], {}),
    "topk_norescale": ("topk", {"k": 4, "aux_loss_coefficient": 0.5,
                                "rescale_acts_by_decoder_norm": False}, {},
                       [0, 2, 5, 7, 11, 13, 19], {}),
    "batchtopk": ("batchtopk", {"k": 4.0, "aux_loss_coefficient": 0.5,
                                "topk_threshold_lr": 0.01}, {}, [1, 3, 8, 16, 22],
                  {"topk_threshold": 0.3}),
}


def loss_case(idx: int, name: str) -> None:
    arch, cfg_kwargs, coeffs, dead, extras = LOSS_CASES[name]
    g = torch.Generator().manual_seed(1000 + idx)
    sae = make_sae(arch, cfg_kwargs)
    seeded_params(sae, g, arch)
    if "negative_threshold_at" in extras:
        with torch.no_grad():
            sae.threshold[extras["negative_threshold_at"]] = -0.1
    if "topk_threshold" in extras:
        sae.topk_threshold = torch.tensor(extras["topk_threshold"], dtype=torch.float64)
    x = 1.5 * torch.randn(BATCH, D_IN, generator=g) + 0.3 * torch.randn(D_IN, generator=g)
    dead_mask = torch.zeros(D_SAE, dtype=torch.bool)
    dead_mask[dead] = True

    t: dict[str, torch.Tensor] = {"x": f32(x), "dead_neuron_mask": dead_mask.to(torch.float32)}
    for n, p in sae.named_parameters():
        t[f"params.{n}"] = f32(p)
    if arch == "batchtopk":
        t["topk_threshold_before"] = sae.topk_threshold.detach().clone()

    sae.train()
    out = sae.training_forward_pass(TrainStepInput(
        sae_in=x, coefficients=coeffs, dead_neuron_mask=dead_mask, n_training_steps=0,
        is_logging_step=False))
    for k, v in out.losses.items():
        t[f"loss.{k}"] = f32(v)
    t["loss.total"] = f32(out.loss)
    t["feature_acts"] = f32(out.feature_acts)
    t["hidden_pre"] = f32(out.hidden_pre)
    t["sae_out"] = f32(out.sae_out)
    if arch == "batchtopk":
        t["topk_threshold_after"] = sae.topk_threshold.detach().clone()
    out.loss.backward()
    for n, p in sae.named_parameters():
        t[f"grad.{n}"] = f32(p.grad)
    total_norm = torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
    t["grad_norm"] = f32(total_norm)
    for n, p in sae.named_parameters():
        t[f"grad_clipped.{n}"] = f32(p.grad)

    meta: dict[str, Any] = {
        "case": name,
        "architecture": arch,
        "cfg": {k: v for k, v in sae.cfg.to_dict().items() if k != "metadata"},
        "coefficients": coeffs,
        "dead_latents": dead,
        "n_training_steps": 0,
        "params": param_names(sae),
        "loss_terms": ["mse_loss", *[k for k in out.losses if k != "mse_loss"]],
    }
    if arch == "jumprelu":
        h, th = out.hidden_pre.detach(), sae.threshold.detach()
        meta["n_in_bandwidth_window"] = int(((h - th).abs() < sae.bandwidth / 2).sum())
        meta["threshold_clamped_in_forward"] = bool((t["params.threshold"] < 0).any())
        t["threshold_used"] = f32(sae.threshold)  # after training_forward_pass's clamp_(min=0)
    if arch in ("topk", "batchtopk"):
        n_dead = len(dead)
        k_aux = D_IN // 2
        meta["aux"] = {"n_dead": n_dead, "k_aux": min(k_aux, n_dead),
                       "scale": min(n_dead / k_aux, 1.0) if n_dead else 0.0}
    if arch == "batchtopk":
        sd = sae.state_dict()
        sd = {k: v.clone() for k, v in sd.items()}
        sae.process_state_dict_for_saving_inference(sd)
        for k, v in sd.items():
            t[f"inference.{k}"] = f32(v)
        meta["inference_architecture"] = "jumprelu"
    meta["keys"] = (
        "x [32,8] input batch; dead_neuron_mask [24] float 0/1 (the bool mask SAELens got); "
        "params.<p> parameters before the step (jumprelu: the raw parameter, see threshold_used); "
        "loss.<term> scalar loss terms as returned in TrainStepOutput.losses, loss.total the summed "
        "loss; feature_acts / hidden_pre [32,24], sae_out [32,8]; grad.<p> d loss.total / d p "
        "after backward, before clipping; grad_norm the total L2 norm clip_grad_norm_ returned; "
        "grad_clipped.<p> after clip_grad_norm_(max_norm=1.0); batchtopk: topk_threshold_before/"
        "after (float64 scalar) around the EMA update and inference.<k> the JumpReLU state dict "
        "save_inference_model writes")
    write_safetensors(OUT / "losses" / f"{name}.safetensors", t, meta)


# --------------------------------------------------------------------------------------------
# 2. LR and coefficient schedules

LR_CASES = [
    {"name": "constant", "scheduler": "constant", "lr": 3e-4, "lr_end": 3e-5,
     "warm_up_steps": 0, "decay_steps": 0, "training_steps": 30, "num_cycles": 1},
    {"name": "constant_warmup10_decay20", "scheduler": "constant", "lr": 3e-4, "lr_end": 3e-5,
     "warm_up_steps": 10, "decay_steps": 20, "training_steps": 100, "num_cycles": 1},
    {"name": "cosine_warmup10_decay20", "scheduler": "cosineannealing", "lr": 3e-4,
     "lr_end": 3e-5, "warm_up_steps": 10, "decay_steps": 20, "training_steps": 100,
     "num_cycles": 1},
    {"name": "cosine_plain", "scheduler": "cosineannealing", "lr": 1e-3, "lr_end": 1e-4,
     "warm_up_steps": 0, "decay_steps": 0, "training_steps": 40, "num_cycles": 1},
    {"name": "constant_warmup1", "scheduler": "constant", "lr": 1e-3, "lr_end": 1e-4,
     "warm_up_steps": 1, "decay_steps": 0, "training_steps": 10, "num_cycles": 1},
    {"name": "cosine_restarts_warmup5", "scheduler": "cosineannealingwarmrestarts", "lr": 1e-3,
     "lr_end": 1e-4, "warm_up_steps": 5, "decay_steps": 0, "training_steps": 45,
     "num_cycles": 2},
]


def lr_schedule(c: dict[str, Any]) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=c["lr"])
    sched = get_lr_scheduler(c["scheduler"], optimizer=opt, training_steps=c["training_steps"],
                             lr=c["lr"], warm_up_steps=c["warm_up_steps"],
                             decay_steps=c["decay_steps"], lr_end=c["lr_end"],
                             num_cycles=c["num_cycles"])
    lrs = []
    for _ in range(c["training_steps"]):
        lrs.append(opt.param_groups[0]["lr"])  # the lr optimizer.step() uses at this step
        opt.step()
        sched.step()
    return lrs


COEF_CASES = [
    {"name": "l1_warmup5", "final_value": 2.0, "warm_up_steps": 5, "steps": 10},
    {"name": "no_warmup", "final_value": 0.7, "warm_up_steps": 0, "steps": 4},
    {"name": "warmup3_small", "final_value": 5e-3, "warm_up_steps": 3, "steps": 6},
]


def coef_schedule(c: dict[str, Any]) -> dict[str, Any]:
    s = CoefficientScheduler(warm_up_steps=c["warm_up_steps"], final_value=c["final_value"])
    used = []
    for _ in range(c["steps"]):
        used.append(s.value)  # what SAETrainer.get_coefficients() passes at this step
        s.step()
    # value after load_state_dict({"current_step": n}) (resume from a checkpoint at step n)
    resumed = []
    for n in range(c["steps"]):
        r = CoefficientScheduler(warm_up_steps=c["warm_up_steps"], final_value=c["final_value"])
        r.load_state_dict({"current_step": n})
        resumed.append(r.value)
    return {**c, "value_used_at_step": used, "value_after_resume_at_step": resumed}


def schedules() -> None:
    obj = {
        "_doc": (
            "lr: for each case the arguments of sae_lens.training.optim.get_lr_scheduler and "
            "`lrs`, lrs[t] = optimizer.param_groups[0]['lr'] when optimizer.step() runs at "
            "training step t (SAETrainer calls lr_scheduler.step() after optimizer.step()). "
            "coefficients: CoefficientScheduler(warm_up_steps, final_value); value_used_at_step[t] "
            "= the coefficient passed to training_forward_pass at step t; "
            "value_after_resume_at_step[n] = .value after load_state_dict({'current_step': n})."),
        **VERSIONS,
        "lr": [{**c, "lrs": lr_schedule(c)} for c in LR_CASES],
        "coefficients": [coef_schedule(c) for c in COEF_CASES],
    }
    write_json(OUT / "schedules.json", obj)


# --------------------------------------------------------------------------------------------
# 3. Adam + clipping from fixed params and grads


def adam_step() -> None:
    g = torch.Generator().manual_seed(77)
    shapes = {"W_enc": (D_IN, D_SAE), "b_enc": (D_SAE,), "W_dec": (D_SAE, D_IN), "b_dec": (D_IN,)}
    params = {n: torch.nn.Parameter(torch.randn(*s, generator=g)) for n, s in shapes.items()}
    lr, betas = 1e-2, (0.9, 0.999)
    opt = torch.optim.Adam(list(params.values()), lr=lr, betas=betas)
    t: dict[str, torch.Tensor] = {f"params0.{n}": f32(p) for n, p in params.items()}
    grad_scales = [0.5, 0.01, 2.0]  # step 1 and 3 clip (norm > 1), step 2 does not
    for step, scale in enumerate(grad_scales, start=1):
        for n, p in params.items():
            p.grad = scale * torch.randn(*shapes[n], generator=g)
            t[f"step{step}.grad.{n}"] = f32(p.grad)
        norm = torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
        t[f"step{step}.grad_norm"] = f32(norm)
        for n, p in params.items():
            t[f"step{step}.grad_clipped.{n}"] = f32(p.grad)
        opt.step()
        opt.zero_grad()
        for n, p in params.items():
            st = opt.state[p]
            t[f"step{step}.params.{n}"] = f32(p)
            t[f"step{step}.exp_avg.{n}"] = f32(st["exp_avg"])
            t[f"step{step}.exp_avg_sq.{n}"] = f32(st["exp_avg_sq"])
    meta = {
        "optimizer": {"name": "torch.optim.Adam", "lr": lr, "betas": list(betas), "eps": 1e-8,
                      "weight_decay": 0.0, "amsgrad": False},
        "clip": "torch.nn.utils.clip_grad_norm_(params, max_norm=1.0) over all 4 params jointly",
        "grad_scales": grad_scales,
        "keys": ("params0.<p> initial params; for step s in 1..3: step<s>.grad.<p> the gradient "
                 "set before the step, step<s>.grad_norm the joint L2 norm before clipping, "
                 "step<s>.grad_clipped.<p> after clipping, step<s>.params.<p> after "
                 "Adam.step(), step<s>.exp_avg / exp_avg_sq.<p> Adam's moments after the step "
                 "(bias-corrected inside the update, stored uncorrected)"),
    }
    write_safetensors(OUT / "adam_step.safetensors", t, meta)


# --------------------------------------------------------------------------------------------
# 4. a real SAETrainer for a few steps

TRAINER_CASES = {
    "standard": ("standard", {"l1_coefficient": 0.5, "l1_warm_up_steps": 3},
                 {"lr": 1e-2, "lr_warm_up_steps": 2, "lr_scheduler_name": "constant",
                  "dead_feature_window": 2}, 6),
    "topk": ("topk", {"k": 3, "aux_loss_coefficient": 1.0},
             {"lr": 1e-2, "lr_scheduler_name": "cosineannealing", "lr_end": 1e-3,
              "lr_warm_up_steps": 1, "dead_feature_window": 1}, 6),
    "jumprelu": ("jumprelu", {"l0_coefficient": 0.05, "l0_warm_up_steps": 2,
                              "jumprelu_bandwidth": 0.2, "pre_act_loss_coefficient": 0.03},
                 {"lr": 1e-2, "dead_feature_window": 1}, 5),
    "batchtopk": ("batchtopk", {"k": 3.0, "topk_threshold_lr": 0.1},
                  {"lr": 1e-2, "dead_feature_window": 1}, 5),
}


def trainer_case(idx: int, name: str) -> None:
    arch, sae_kwargs, tr_kwargs, n_steps = TRAINER_CASES[name]
    g = torch.Generator().manual_seed(2000 + idx)
    sae = make_sae(arch, sae_kwargs)
    seeded_params(sae, g, arch)
    if arch == "jumprelu":  # latents 0-2 never fire, so they go dead and pre_act_loss kicks in
        with torch.no_grad():
            sae.threshold[:3] = 4.0
    batches = [1.5 * torch.randn(BATCH, D_IN, generator=g) for _ in range(n_steps)]
    cfg = SAETrainerConfig(total_training_samples=BATCH * n_steps, train_batch_size_samples=BATCH,
                           logger=LoggingConfig(log_to_wandb=False), **tr_kwargs)
    if cfg.lr_end is None:  # LanguageModelSAERunnerConfig.__post_init__ sets lr_end = lr / 10
        cfg.lr_end = cfg.lr / 10
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=iter(batches))
    t: dict[str, torch.Tensor] = {}
    for n, p in sae.named_parameters():
        t[f"params0.{n}"] = f32(p)
    if arch == "batchtopk":
        t["topk_threshold0"] = sae.topk_threshold.detach().clone()
    per_step = []
    for s in range(n_steps):
        t[f"step{s}.x"] = f32(batches[s])
        t[f"step{s}.dead_neuron_mask"] = trainer.dead_neurons.to(torch.float32)
        lr_used = trainer.optimizer.param_groups[0]["lr"]
        coefs = trainer.get_coefficients()
        trainer.maybe_reset_sparsity()
        out = trainer.step(next(trainer.data_provider))  # the body of SAETrainer.fit
        trainer.n_training_steps += 1
        for k, v in out.losses.items():
            t[f"step{s}.loss.{k}"] = f32(v)
        t[f"step{s}.loss.total"] = f32(out.loss)
        for n, p in sae.named_parameters():
            t[f"step{s}.params.{n}"] = f32(p)
        t[f"step{s}.n_forward_passes_since_fired"] = f32(trainer.n_forward_passes_since_fired)
        t[f"step{s}.act_freq_scores"] = f32(trainer.act_freq_scores)
        if arch == "batchtopk":
            t[f"step{s}.topk_threshold"] = sae.topk_threshold.detach().clone()
        per_step.append({"step": s, "lr": lr_used, "coefficients": coefs,
                         "n_dead_before": int(t[f"step{s}.dead_neuron_mask"].sum())})
    meta = {
        "case": name, "architecture": arch,
        "cfg": {k: v for k, v in sae.cfg.to_dict().items() if k != "metadata"},
        "trainer_cfg": {k: getattr(cfg, k) for k in (
            "total_training_samples", "train_batch_size_samples", "lr", "lr_end",
            "lr_scheduler_name", "lr_warm_up_steps", "lr_decay_steps", "n_restart_cycles",
            "adam_beta1", "adam_beta2", "dead_feature_window", "feature_sampling_window")},
        "n_steps": n_steps, "per_step": per_step, "params": param_names(sae),
        "keys": ("params0.<p> initial params (batchtopk: topk_threshold0 float64); for step s: "
                 "step<s>.x the batch, step<s>.dead_neuron_mask [24] float 0/1 passed to "
                 "training_forward_pass (counter > dead_feature_window, counters BEFORE this step), "
                 "step<s>.loss.<term>/loss.total, step<s>.params.<p> after clip+Adam, "
                 "step<s>.n_forward_passes_since_fired / act_freq_scores after the step, "
                 "batchtopk step<s>.topk_threshold after the EMA; per_step: lr and coefficients "
                 "used at that step; jumprelu: threshold[0:3] = 4.0 in params0 so that those "
                 "latents never fire and pre_act_loss becomes non-zero once they are dead"),
    }
    write_safetensors(OUT / "trainer" / f"{name}.safetensors", t, meta)


# --------------------------------------------------------------------------------------------
# 5. activation-norm scaling factor estimate and fold


def norm_scaling() -> None:
    from sae_lens.training.activation_scaler import ActivationScaler

    g = torch.Generator().manual_seed(3000)
    batches = [3.0 * torch.randn(BATCH, D_IN, generator=g) + 1.0 for _ in range(4)]
    scaler = ActivationScaler()
    scaler.estimate_scaling_factor(d_in=D_IN, data_provider=iter(batches),
                                   n_batches_for_norm_estimate=len(batches))
    sf = float(scaler.scaling_factor)
    t: dict[str, torch.Tensor] = {f"batch{i}": f32(b) for i, b in enumerate(batches)}
    t["scaling_factor"] = torch.tensor(sf, dtype=torch.float64)
    x = batches[0]
    arch_kwargs = {"standard": {}, "gated": {}, "jumprelu": {}, "topk": {"k": 4},
                   "batchtopk": {"k": 4.0}}
    for i, (arch, kw) in enumerate(arch_kwargs.items()):
        sae = make_sae(arch, {**kw, "normalize_activations": "expected_average_only_in"})
        seeded_params(sae, torch.Generator().manual_seed(3100 + i), arch)
        if arch == "batchtopk":
            sae.topk_threshold = torch.tensor(0.4, dtype=torch.float64)
        for n, p in sae.named_parameters():
            t[f"{arch}.before.{n}"] = f32(p)
        sae.eval()
        with torch.no_grad():
            t[f"{arch}.sae_out_scaled_space"] = f32(sae.decode(sae.encode(scaler(x))))
        if arch == "batchtopk":
            t[f"{arch}.before.topk_threshold"] = sae.topk_threshold.detach().clone()
        sae.fold_activation_norm_scaling_factor(sf)
        for n, p in sae.named_parameters():
            t[f"{arch}.after.{n}"] = f32(p)
        if arch == "batchtopk":
            t[f"{arch}.after.topk_threshold"] = sae.topk_threshold.detach().clone()
        with torch.no_grad():
            t[f"{arch}.sae_out_folded"] = f32(sae.decode(sae.encode(x)))
    meta = {
        "d_in": D_IN,
        "archs": list(arch_kwargs),
        "keys": ("batch0..3 [32,8] the data; scaling_factor (float64 scalar) = "
                 "ActivationScaler.estimate_scaling_factor over them = sqrt(d_in) / mean_b ||x_b|| "
                 "(training then feeds x * scaling_factor); <arch>.before.<p> params (seeded, cfg "
                 "normalize_activations expected_average_only_in), <arch>.after.<p> after "
                 "fold_activation_norm_scaling_factor(scaling_factor) (W_enc *= s, W_dec /= s, "
                 "b_dec /= s; batchtopk also topk_threshold /= s); <arch>.sae_out_scaled_space = "
                 "decode(encode(batch0 * s)) before the fold, <arch>.sae_out_folded = "
                 "decode(encode(batch0)) after it (= sae_out_scaled_space / s)"),
    }
    write_safetensors(OUT / "norm_scaling.safetensors", t, meta)


# --------------------------------------------------------------------------------------------
# 6. config defaults


def jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v):
        return jsonable(dataclasses.asdict(v))
    return repr(v)


def config_defaults() -> None:
    from sae_lens.config import LanguageModelSAERunnerConfig

    runner = LanguageModelSAERunnerConfig(sae=StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE))
    fields = {f.name: jsonable(getattr(runner, f.name)) for f in dataclasses.fields(runner)
              if f.name not in ("sae", "sae_lens_version", "sae_lens_training_version")}
    derived = {k: jsonable(getattr(runner, k)) for k in (
        "lr_end", "total_training_steps", "total_training_tokens", "tokens_per_buffer")}
    trainer = jsonable(runner.to_sae_trainer_config())
    # __post_init__ appends a random id to checkpoint_path: keep the file byte-stable
    random_id = "checkpoints/<8 random hex digits>"
    fields["checkpoint_path"] = trainer["checkpoint_path"] = random_id
    saes = {}
    for arch in ("standard", "gated", "jumprelu", "topk", "batchtopk"):
        cfg = make_sae(arch, {}).cfg.to_dict()
        saes[arch] = {k: jsonable(v) for k, v in cfg.items() if k != "metadata"}
    obj = {
        "_doc": ("Defaults of SAELens's LanguageModelSAERunnerConfig (`runner`: every field as "
                 "constructed with only `sae` given; `runner_derived`: values __post_init__ / "
                 "properties compute from them, e.g. lr_end = lr / 10), the SAETrainerConfig "
                 "it builds (`trainer`), and every training SAE config's to_dict() without "
                 "`metadata` for d_in 8, d_sae 24 and no other argument (`sae`)."),
        **VERSIONS,
        "runner": fields, "runner_derived": derived, "trainer": trainer, "sae": saes,
    }
    write_json(OUT / "config_defaults.json", obj)


def main() -> None:
    for i, name in enumerate(LOSS_CASES):
        loss_case(i, name)
    schedules()
    adam_step()
    for i, name in enumerate(TRAINER_CASES):
        trainer_case(i, name)
    norm_scaling()
    config_defaults()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"total {mg.human(total)} under {rel(OUT)}")


if __name__ == "__main__":
    main()
