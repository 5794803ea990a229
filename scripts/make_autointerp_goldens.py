"""Goldens for saescope's autointerp scoring from EleutherAI's delphi (eai-delphi 0.1.3).

Builds synthetic latent records (seeded), runs delphi's own DetectionScorer and FuzzingScorer
on them with a scripted client (an answer decided by each example's text alone, so that the
order delphi shuffles the samples in does not matter), and pools the scored examples with
delphi's `compute_confusion` + `compute_classification_metrics` (the "Class-Balanced Accuracy"
its `log_results` prints). Writes tests/fixtures/autointerp/delphi_scores.json: the records,
the explanations, the texts delphi showed, and delphi's metrics per scorer (pooled and per
latent). tests/autointerp_delphi.rs scores the same records with saescope and compares.

Usage: bash scripts/setup_delphi_venv.sh && .venv-delphi/bin/python scripts/make_autointerp_goldens.py
"""
import asyncio
import json
import re
import sys
import types
from pathlib import Path


def stub_unused_modules():
    """delphi's package imports vLLM, sentence-transformers, faiss, sparsify and tiktoken at
    import time (its offline client, embedding and simulation scorers and sparse-coder
    loaders); the classifier scorers
    never call them, so empty stand-ins are enough."""
    names = {
        "vllm": ["LLM", "SamplingParams"],
        "vllm.distributed": [],
        "vllm.distributed.parallel_state": [
            "destroy_model_parallel",
            "destroy_distributed_environment",
        ],
        "vllm.inputs": ["TokensPrompt"],
        "sentence_transformers": ["SentenceTransformer"],
        "faiss": [],
        "sparsify": ["Sae"],
        "tiktoken": [],
    }
    for mod, attrs in names.items():
        m = types.ModuleType(mod)
        for a in attrs:
            setattr(m, a, type(a, (), {}))
        sys.modules[mod] = m


stub_unused_modules()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from delphi.clients.client import Client, Response  # noqa: E402
from delphi.latents.latents import (  # noqa: E402
    ActivatingExample,
    Latent,
    LatentRecord,
    NonActivatingExample,
)
from delphi.log.result_analysis import (  # noqa: E402
    compute_classification_metrics,
    compute_confusion,
)
from delphi.scorers import DetectionScorer, FuzzingScorer  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/autointerp/delphi_scores.json"
WORDS = (
    " the of and to in is was for on that with as by at from his her it an were are which "
    "this be or has had not but have one new first been their after who they two its more "
    "other into time only some most also over such many then year them these may would"
).split()
KEYS = [" cat", " river", " Monday", " seven", " blue", " doctor", " piano", " winter"]
CTX = 16
N_QUANTILES = 10
PER_QUANTILE = 2
N_NOT_ACTIVE = 20
SHOWN = 5


def key_of(explanation: str) -> str:
    return " " + explanation.rsplit("word", 1)[-1].strip().strip('"')


class Scripted(Client):
    """Answers 1 for an example whose text holds the explanation's word (fuzzing: inside a
    <<…>> mark), else 0."""

    def __init__(self):
        super().__init__("scripted")

    async def generate(self, prompt, **kwargs):
        user = prompt[-1]["content"]
        key = key_of(re.search(r"Latent explanation: (.*)", user).group(1))
        fuzz = "<<" in prompt[0]["content"] or "<<" in user
        answers = []
        for line in user.splitlines():
            m = re.match(r"Example \d+:(.*)", line)
            if m:
                text = m.group(1)
                if fuzz:
                    spans = re.findall(r"<<(.*?)>>", text)
                    answers.append(int(any(key.strip() in s for s in spans)))
                else:
                    answers.append(int(key in text))
        return Response(text=json.dumps(answers))


def make_records(rng):
    records = []
    for li, key in enumerate(KEYS):
        test, not_active = [], []
        for q in range(N_QUANTILES):
            for _ in range(PER_QUANTILE):
                toks = list(rng.choice(WORDS, CTX))
                acts = [0.0] * CTX
                pos = int(rng.integers(0, CTX))
                # Most activating examples show the key word where the latent fires; some fire
                # on another word (the explanation misses them).
                if rng.random() < 0.8:
                    toks[pos] = key
                acts[pos] = float(round(10.0 * (1.0 - q / N_QUANTILES) + rng.random(), 3))
                test.append({"str_tokens": toks, "acts": acts, "quantile": q})
        for _ in range(N_NOT_ACTIVE):
            toks = list(rng.choice(WORDS, CTX))
            # Some non-activating examples hold the key word (false positives for detection);
            # half of those hold it where fuzzing always marks one token, CTX - CTX // 4.
            r = rng.random()
            if r < 0.15:
                toks[CTX - CTX // 4] = key
            elif r < 0.3:
                toks[int(rng.integers(0, CTX // 2))] = key
            not_active.append({"str_tokens": toks, "acts": [0.0] * CTX})
        records.append(
            {
                "latent": li,
                "explanation": f'the word "{key.strip()}"',
                "test": test,
                "not_active": not_active,
            }
        )
    return records


def delphi_record(r):
    rec = LatentRecord(Latent("layers.0", r["latent"]))
    rec.explanation = r["explanation"]
    rec.test = [
        ActivatingExample(
            tokens=torch.zeros(CTX, dtype=torch.long),
            activations=torch.tensor(e["acts"]),
            str_tokens=e["str_tokens"],
            quantile=e["quantile"],
        )
        for e in r["test"]
    ]
    rec.not_active = [
        NonActivatingExample(
            tokens=torch.zeros(CTX, dtype=torch.long),
            activations=torch.tensor(e["acts"]),
            str_tokens=e["str_tokens"],
            distance=-1.0,
        )
        for e in r["not_active"]
    ]
    return rec


def metrics(outputs):
    df = pd.DataFrame(
        [
            {"activating": o.activating, "prediction": o.prediction}
            for o in outputs
        ]
    )
    m = compute_classification_metrics(compute_confusion(df))
    return {k: float(m[k]) for k in ("accuracy", "precision", "recall", "f1_score")}


async def main():
    rng = np.random.default_rng(2026)
    records = make_records(rng)
    client = Scripted()
    out = {"delphi": "eai-delphi 0.1.3", "n_examples_shown": SHOWN, "records": records}
    for name, scorer in [
        ("detection", DetectionScorer(client, n_examples_shown=SHOWN)),
        ("fuzz", FuzzingScorer(client, n_examples_shown=SHOWN)),
    ]:
        pooled, per_latent, texts = [], [], []
        for r in records:
            samples = scorer._prepare(delphi_record(r))
            texts.append(sorted(s.text for s in samples))
            res = await scorer(delphi_record(r))
            pooled += res.score
            per_latent.append(metrics(res.score)["accuracy"])
        out[name] = {
            "pooled": metrics(pooled),
            "per_latent_balanced_accuracy": per_latent,
            "texts": texts,
        }
        print(f"{name}: delphi balanced accuracy {out[name]['pooled']['accuracy']:.4f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    if "--check-imports" in sys.argv:
        print("make_autointerp_goldens: imports ok")
    else:
        asyncio.run(main())
