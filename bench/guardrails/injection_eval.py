"""Precision, recall, F1 and false-positive rate of the shipped injection detector on each
evaluation set, and its per-text latency beside a bare Embedder.embed of the same text.

    python3 bench/guardrails/injection_eval.py [--threshold T] [--errors N]

None of these sets was used to fit the weights or to choose the threshold (injection_data.py).
Latency is measured one text at a time on one core (threads=1), after a warm-up, so the ratio
is the detector's cost relative to the embedding the router already pays for.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_data import Example, eval_sets

from turnout.governance.injection import InjectionDetector
from turnout.routing.embedder import Embedder


def metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | int]:
    predicted = scores >= threshold
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    fn = int(np.sum(~predicted & (labels == 1)))
    tn = int(np.sum(~predicted & (labels == 0)))
    nan = float("nan")
    precision = tp / (tp + fp) if tp + fp and tp + fn else nan  # no positives: FPR only
    recall = tp / (tp + fn) if tp + fn else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fn else nan
    fpr = fp / (fp + tn) if fp + tn else nan
    return {
        "n": len(labels),
        "pos": int(labels.sum()),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fpr,
    }


def fmt(value: float) -> str:
    return "  -  " if math.isnan(value) else f"{value:.3f}"


def p50_ms(fn, texts: list[str]) -> float:
    times = []
    for text in texts:
        start = time.perf_counter()
        fn(text)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


WARM_UP = ["warm-up one", "a second warm-up text", "and a third", "four", "five warm-ups"]


def latency(detector: InjectionDetector, embedder: Embedder, name: str, texts: list[str]) -> None:
    """Detector and baseline use separate Embedders, each text once, so the embedder's
    per-text cache never serves a measured call."""
    for text in WARM_UP:
        detector.score(f"{name} {text}")
        embedder.embed([f"{name} {text}"])
    det = p50_ms(detector.score, texts)
    emb = p50_ms(lambda t: embedder.embed([t]), texts)
    median_chars = int(statistics.median(len(t) for t in texts))
    print(f"| {name} | {len(texts)} | {median_chars} | {det:.2f} | {emb:.2f} | {det / emb:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=None, help="default: the shipped one")
    parser.add_argument("--errors", type=int, default=0, help="print up to N errors per set")
    args = parser.parse_args()

    embedder = Embedder(threads=1)
    detector = InjectionDetector(Embedder(threads=1), threshold=args.threshold)
    print(f"threshold {detector.threshold:.4f}\n")
    print("| set | texts | injections | precision | recall | F1 | FPR | FP | FN |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    sets = eval_sets()
    errors: list[tuple[str, float, Example]] = []
    for name, examples in sets.items():
        scores = detector.scores([e.text for e in examples])
        labels = np.asarray([e.label for e in examples])
        m = metrics(scores, labels, detector.threshold)
        print(
            f"| {name} | {m['n']} | {m['pos']} | {fmt(m['precision'])} | {fmt(m['recall'])} | "
            f"{fmt(m['f1'])} | {fmt(m['fpr'])} | {m['fp']} | {m['fn']} |"
        )
        wrong = [
            (name, float(s), e)
            for s, e in zip(scores, examples, strict=True)
            if (s >= detector.threshold) != bool(e.label)
        ]
        errors += sorted(wrong, key=lambda w: -abs(w[1] - detector.threshold))[: args.errors]
    for name, score, example in errors:
        kind = "FN" if example.label else "FP"
        print(f"{kind} {score:.3f} [{name.split(' ')[0]}] {example.source}: {example.text[:160]!r}")

    print("\nper-text latency, one text per call, one core (p50, ms)\n")
    print("| texts | n | median chars | detector.score | Embedder.embed | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    short = (
        [e.text for e in sets["routing suite general-dev (benign only)"]]
        if ("routing suite general-dev (benign only)" in sets)
        else [e.text for e in sets["routing suite support-desk (benign only)"]]
    )
    latency(detector, embedder, "ordinary requests (routing suite)", short[:150])
    bastion = [e.text for e in sets["bastioncorpus (transfer, never trained on)"]]
    latency(detector, embedder, "bastioncorpus (short attacks and benign)", bastion)
    long = [
        e.text for e in sets["held-out split (test 15% of training sources)"] if len(e.text) > 2000
    ]
    latency(detector, embedder, "long jailbreaks (> 2000 chars, held-out)", long)


if __name__ == "__main__":
    main()
