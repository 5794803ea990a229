#!/usr/bin/env python3
"""Check that SAELens loads an SAE folder unchanged and computes the same outputs as saescope.

Usage (from the repository root, after scripts/setup_golden_venv.sh):

    .venv-golden/bin/python scripts/check_saelens_load.py DIR [--atol 1e-4] [--rtol 1e-4]
    .venv-golden/bin/python scripts/check_saelens_load.py DIR --write-reference OUT.safetensors
    .venv-golden/bin/python scripts/check_saelens_load.py --self-test

DIR is an SAE folder in SAELens's format (cfg.json + sae_weights.safetensors [+ sparsity.
safetensors]), e.g. one written by `saescope train`. The script

  1. loads it with `sae_lens.SAE.load_from_disk(DIR, device="cpu")` (SAELens 6.54.12, no
     overrides, no folding): any cfg.json key or tensor name SAELens does not accept fails here;
  2. takes the input x: the `x` tensor of DIR/check_outputs.safetensors when that file exists,
     otherwise a fixed seeded input (torch.Generator seed --seed, default 0; x = randn(--n, d_in),
     default n 64; cast to the SAE's dtype);
  3. runs feature_acts = sae.encode(x) and recons = sae.decode(feature_acts) under no_grad;
  4. if DIR/check_outputs.safetensors exists (written by saescope: keys `x` [n, d_in],
     `feature_acts` [n, d_sae], `recons` [n, d_in]), compares both with torch.allclose(atol, rtol)
     and prints max |diff|, the number of out-of-tolerance entries, and for feature_acts how many
     (token, latent) entries differ in being active (non-zero) -- TopK ties or a JumpReLU threshold
     can flip an entry without the rest being wrong.

Prints `PASS ...` / `FAIL ...` lines and a final JSON summary line; exit status 0 on pass (or when
there is nothing to compare against: then it prints `LOADED (no check_outputs.safetensors)`), 1 on
a failed comparison, 2 when SAELens cannot load the folder.

--write-reference OUT writes SAELens's x / feature_acts / recons to OUT (safetensors), so that the
Rust side can also compare in the other direction.

--self-test builds, in a temporary directory, one folder per architecture with SAELens itself
(TrainingSAE.save_inference_model of seeded standard, gated, jumprelu, topk and batchtopk training
SAEs; batchtopk is saved as jumprelu) together with a check_outputs.safetensors computed from the
*training* module (what saescope will do), then checks every folder as above, and also checks
that a corrupted check_outputs file is reported as FAIL.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

warnings.filterwarnings("ignore")

CHECK_FILE = "check_outputs.safetensors"


def load_sae(folder: Path) -> Any:
    from sae_lens import SAE

    return SAE.load_from_disk(str(folder), device="cpu")


def fixed_input(d_in: int, n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g).to(dtype)


def compare(name: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float,
            active: bool = False) -> dict[str, Any]:
    res: dict[str, Any] = {"name": name, "shape": list(want.shape)}
    if tuple(got.shape) != tuple(want.shape):
        res.update(ok=False, error=f"shape: SAELens {list(got.shape)} vs file {list(want.shape)}")
        return res
    got, want = got.to(torch.float64), want.to(torch.float64)
    diff = (got - want).abs()
    bad = diff > atol + rtol * want.abs()
    res.update(ok=not bool(bad.any()), max_abs_diff=float(diff.max()) if diff.numel() else 0.0,
               n_out_of_tol=int(bad.sum()), numel=want.numel())
    if active:
        res["n_active_mismatch"] = int(((got != 0) != (want != 0)).sum())
        res["l0_saelens"] = float((got != 0).sum(-1).float().mean())
        res["l0_file"] = float((want != 0).sum(-1).float().mean())
    return res


def check_folder(folder: Path, atol: float, rtol: float, n: int, seed: int,
                 write_reference: Path | None = None, quiet: bool = False) -> tuple[int, dict]:
    summary: dict[str, Any] = {"dir": str(folder)}
    try:
        sae = load_sae(folder)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        print(f"FAIL load: SAE.load_from_disk({folder}) raised {type(e).__name__}: {e}")
        summary.update(status="load_error", error=f"{type(e).__name__}: {e}")
        return 2, summary
    sae.eval()
    summary.update(architecture=sae.cfg.architecture(), d_in=sae.cfg.d_in, d_sae=sae.cfg.d_sae,
                   dtype=str(sae.dtype))
    # The metadata must survive loading (HookedSAETransformer.add_sae needs hook_name): a cfg.json
    # without metadata.sae_lens_version is treated as pre-6.0 and loses it.
    want_hook = json.loads((folder / "cfg.json").read_text()).get("metadata", {}).get("hook_name")
    got_hook = getattr(sae.cfg.metadata, "hook_name", None)
    if want_hook is not None and got_hook != want_hook:
        print(f"FAIL metadata: hook_name {want_hook!r} in cfg.json, {got_hook!r} after loading")
        summary.update(status="fail", error=f"hook_name lost: {got_hook!r}")
        return 1, summary
    if not quiet:
        print(f"loaded {folder}: {type(sae).__name__} architecture={sae.cfg.architecture()} "
              f"d_in={sae.cfg.d_in} d_sae={sae.cfg.d_sae} dtype={sae.dtype}")

    ref_path = folder / CHECK_FILE
    ref = load_file(str(ref_path)) if ref_path.exists() else None
    if ref is not None and "x" in ref:
        x = ref["x"].to(sae.dtype)
        summary["input"] = f"{CHECK_FILE}:x"
    else:
        x = fixed_input(sae.cfg.d_in, n, seed, sae.dtype)
        summary["input"] = f"randn({n}, {sae.cfg.d_in}) seed {seed}"
    with torch.no_grad():
        feature_acts = sae.encode(x)
        if feature_acts.is_sparse:
            feature_acts = feature_acts.to_dense()
        recons = sae.decode(feature_acts)
    if write_reference is not None:
        write_reference.parent.mkdir(parents=True, exist_ok=True)
        save_file({"x": x.contiguous(), "feature_acts": feature_acts.contiguous(),
                   "recons": recons.contiguous()}, str(write_reference),
                  metadata={"what": "SAELens outputs: feature_acts = sae.encode(x), recons = "
                            "sae.decode(feature_acts)", "source_dir": str(folder)})
        print(f"wrote {write_reference}")

    if ref is None:
        l0 = float((feature_acts != 0).sum(-1).float().mean())
        print(f"LOADED (no {CHECK_FILE}): l0 {l0:.3f}")
        summary["status"] = "loaded_no_reference"
        return 0, summary

    results = []
    for key, got in (("feature_acts", feature_acts), ("recons", recons)):
        if key not in ref:
            results.append({"name": key, "ok": False, "error": f"{CHECK_FILE} has no `{key}`"})
            continue
        results.append(compare(key, got, ref[key], atol, rtol, active=key == "feature_acts"))
    ok = all(r["ok"] for r in results)
    for r in results:
        tag = "PASS" if r["ok"] else "FAIL"
        if "error" in r:
            print(f"{tag} {r['name']}: {r['error']}")
        else:
            extra = (f", active mismatches {r['n_active_mismatch']}, "
                     f"L0 SAELens {r['l0_saelens']:.3f} / file {r['l0_file']:.3f}"
                     if "n_active_mismatch" in r else "")
            print(f"{tag} {r['name']} {r['shape']}: max|diff| {r['max_abs_diff']:.3g}, "
                  f"{r['n_out_of_tol']}/{r['numel']} out of tolerance (atol {atol}, rtol {rtol})"
                  f"{extra}")
    summary.update(status="pass" if ok else "fail", results=results)
    return (0 if ok else 1), summary


# ------------------------------------------------------------------------------------------
# self-test: folders written by SAELens itself


def build_self_test_folders(base: Path) -> list[Path]:
    from sae_lens.saes import (
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

    d_in, d_sae = 16, 64
    cases = {
        "standard": StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae)),
        "gated": GatedTrainingSAE(GatedTrainingSAEConfig(d_in=d_in, d_sae=d_sae)),
        "jumprelu": JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae)),
        "topk": TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=8)),
        "batchtopk": BatchTopKTrainingSAE(
            BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=8.0)),
    }
    folders = []
    for i, (name, sae) in enumerate(cases.items()):
        g = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            w = torch.randn(d_sae, d_in, generator=g)
            norms = 0.5 + 1.5 * torch.rand(d_sae, generator=g)
            sae.W_dec.copy_(w / w.norm(dim=-1, keepdim=True) * norms[:, None])
            sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=g) / d_in**0.5)
            sae.b_dec.copy_(0.2 * torch.randn(d_in, generator=g))
            if name == "gated":
                sae.b_gate.copy_(0.3 * torch.randn(d_sae, generator=g) - 0.1)
                sae.b_mag.copy_(0.3 * torch.randn(d_sae, generator=g))
                sae.r_mag.copy_(0.3 * torch.randn(d_sae, generator=g))
            else:
                sae.b_enc.copy_(0.3 * torch.randn(d_sae, generator=g) - 0.2)
            if name == "jumprelu":
                sae.threshold.copy_(0.05 + 0.5 * torch.rand(d_sae, generator=g))
            if name == "batchtopk":
                sae.topk_threshold = torch.tensor(0.7, dtype=torch.float64)
        x = 1.5 * torch.randn(64, d_in, generator=g)
        sae.eval()
        with torch.no_grad():
            if name == "batchtopk":
                # saved as JumpReLU with threshold = topk_threshold on the rescaled pre-activation
                _, hidden = sae.encode_with_hidden_pre(x)
                acts = hidden * (hidden > sae.topk_threshold.item())
            else:
                acts = sae.encode(x)
            recons = sae.decode(acts)
        folder = base / name
        sae.save_inference_model(str(folder))
        save_file({"x": x, "feature_acts": acts.contiguous(), "recons": recons.contiguous()},
                  str(folder / CHECK_FILE))
        folders.append(folder)
    return folders


def self_test(atol: float, rtol: float, n: int, seed: int) -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for folder in build_self_test_folders(base):
            print(f"--- {folder.name} (written by SAELens save_inference_model)")
            rc, summary = check_folder(folder, atol, rtol, n, seed)
            print(json.dumps(summary))
            failures += rc != 0
        # negative check: a corrupted reference must FAIL
        bad = base / "standard"
        ref = load_file(str(bad / CHECK_FILE))
        ref["recons"] = ref["recons"] + 1e-2
        save_file(ref, str(bad / CHECK_FILE))
        print("--- standard with recons + 1e-2 (must FAIL)")
        rc, _ = check_folder(bad, atol, rtol, n, seed, quiet=True)
        if rc != 1:
            print("SELF-TEST FAIL: corrupted reference was not detected")
            failures += 1
        # no reference: loads and reports
        (bad / CHECK_FILE).unlink()
        print("--- standard without check_outputs (must load)")
        rc, _ = check_folder(bad, atol, rtol, n, seed, quiet=True)
        failures += rc != 0
    print("SELF-TEST " + ("PASS" if failures == 0 else f"FAIL ({failures})"))
    return 0 if failures == 0 else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", nargs="?", type=Path,
                    help="SAE folder (cfg.json + sae_weights.safetensors)")
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--n", type=int, default=64, help="rows of the seeded input (no check file)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-reference", type=Path, default=None)
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.self_test:
        sys.exit(self_test(args.atol, args.rtol, args.n, args.seed))
    if args.dir is None:
        ap.error("DIR is required (or --self-test)")
    rc, summary = check_folder(args.dir, args.atol, args.rtol, args.n, args.seed,
                               write_reference=args.write_reference)
    print(json.dumps(summary))
    if summary.get("status") == "loaded_no_reference":
        print("LOADED")
    else:
        print({0: "PASS", 1: "FAIL", 2: "FAIL (load)"}[rc])
    sys.exit(rc)


if __name__ == "__main__":
    main()
