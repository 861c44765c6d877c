"""Prompt categories from the text classifier on the paper's 200 Med-VBench prompts (CPU, real
offline MiniLM): the category distribution, prompts/s, and agreement with hand labels on every
fifth prompt (`jobs/data/medvbench_prompt_labels.tsv`) against always guessing the most common
label. A benchmark job, not a test.

Usage: python jobs/bench_prompt_categories.py --prompts PATH/medvbench_prompts_200.txt [--probe X.npz]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LABELS = Path(__file__).resolve().parent / "data" / "medvbench_prompt_labels.tsv"


def read_labels(path: Path) -> dict[int, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            i, cat = line.split("\t")
            out[int(i)] = cat.strip()
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", required=True, help="the 200-prompt file, one prompt per line")
    ap.add_argument("--probe", help="a category probe instead of zero-shot")
    ap.add_argument("--embedder", default="minilm")
    args = ap.parse_args(argv)

    from medgen_ray.config import PromptClassifierConfig
    from medgen_ray.evaluate.categories import load_prompt_classifier
    from medgen_ray.evaluate.job import read_prompts

    prompts = [p for _, p in read_prompts(args.prompts, None)]
    t0 = time.perf_counter()
    categorizer, source = load_prompt_classifier(PromptClassifierConfig(embedder=args.embedder, probe=args.probe))
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    cats, probs = categorizer.classify(prompts)
    t_run = time.perf_counter() - t0
    labels = read_labels(LABELS)
    scored = {i: c for i, c in labels.items() if c != "ambiguous" and i < len(prompts)}
    hits = sum(cats[i] == c for i, c in scored.items())
    majority, n_major = Counter(scored.values()).most_common(1)[0]
    print(f"prompt categories ({source}, {args.embedder}) on {len(prompts)} prompts, CPU")
    print(f"  load {t_load:.1f} s, classify {t_run:.2f} s ({len(prompts) / t_run:.0f} prompts/s)")
    for c, n in Counter(cats).most_common():
        print(f"  {c:26s} {n:4d}")
    print(f"  agreement with hand labels: {hits}/{len(scored)} = {hits / len(scored):.2f} "
          f"(always '{majority}': {n_major / len(scored):.2f}; {len(labels) - len(scored)} ambiguous not scored)")
    wrong = [(i, c, cats[i]) for i, c in scored.items() if cats[i] != c]
    for i, truth, got in wrong:
        print(f"    #{i:3d} labelled {truth!r}, classified {got!r}: {prompts[i][:90]}...")
    return {"accuracy": hits / len(scored), "majority": n_major / len(scored), "prompts_per_s": len(prompts) / t_run,
            "distribution": dict(Counter(cats))}


if __name__ == "__main__":
    main()
