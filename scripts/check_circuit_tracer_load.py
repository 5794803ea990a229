#!/usr/bin/env python3
"""Check that a transcoder set saescope wrote in circuit-tracer's layout
(`TranscoderSet::save_circuit_tracer`: DIR/config.yaml + DIR/layer_L.safetensors) loads with
circuit-tracer 0.5.0's own loader and computes what the SAELens folders it came from compute.

Usage: .venv-circuit/bin/python scripts/check_circuit_tracer_load.py CT_DIR SAELENS_DIR
(SAELENS_DIR/layer_L: the SAELens transcoder folders). Prints the largest differences; exits 1
if one exceeds 1e-5 (relative to the output scale).
"""
import sys
from pathlib import Path

import torch
import yaml
from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set
from sae_lens import SAE


def main() -> None:
    ct_dir, sl_dir = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = yaml.safe_load((ct_dir / "config.yaml").read_text())
    assert cfg["model_kind"] == "transcoder_set", cfg
    paths = {i: str(ct_dir / f) for i, f in enumerate(cfg["transcoders"])}
    tcs = load_transcoder_set(paths, scan=cfg["scan"], feature_input_hook=cfg["feature_input_hook"],
                              feature_output_hook=cfg["feature_output_hook"],
                              device=torch.device("cpu"), dtype=torch.float32,
                              lazy_encoder=False, lazy_decoder=False)
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for i in range(len(paths)):
        sae = SAE.load_from_disk(str(sl_dir / f"layer_{i}"), dtype="float32").eval()
        x = torch.randn(32, sae.cfg.d_in, generator=g) * 1.5
        with torch.no_grad():
            want_f = sae.encode(x)
            got_f = tcs[i].encode(x)
            want_y = sae.decode(want_f)
            got_y = tcs[i].decode(got_f, x)
        df = (want_f - got_f).abs().max().item() / max(want_f.abs().max().item(), 1.0)
        dy = (want_y - got_y).abs().max().item() / max(want_y.abs().max().item(), 1.0)
        worst = max(worst, df, dy)
        print(f"layer {i}: activations {df:.2e}, outputs {dy:.2e} (relative)")
    print(f"circuit-tracer loads {len(paths)} transcoders; worst relative difference {worst:.2e}")
    sys.exit(0 if worst < 1e-5 else 1)


if __name__ == "__main__":
    main()
