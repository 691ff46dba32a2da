"""Rebuild the injection detector's weights from the data under bench/guardrails/data/.

    python3 bench/guardrails/train_injection.py            # writes src/turnout/governance/data/injection_lr.json
    python3 bench/guardrails/train_injection.py --dry-run  # only prints the validation figures

Deterministic: a fixed split (injection_data.split_of), an L2-regularised logistic regression
solved exactly by Newton's method in numpy (no random initialisation, no scikit-learn), weights
rounded to 6 decimals so the file's sha256 only changes when the model does. Every window of a
text is a training row carrying the text's label, weighted so each text counts once and the two
classes count equally. The regularisation strength and the threshold are chosen on the
validation split only (best F1); the held-out test split and the transfer sets are never read.
After a rebuild, put the printed sha256 in WEIGHTS_SHA256 in src/turnout/governance/injection.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_data import ROOT, Example, splits

from turnout.governance.injection import features, windows
from turnout.routing.embedder import EMBEDDING_DIM, Embedder

OUT = ROOT / "src" / "turnout" / "governance" / "data" / "injection_lr.json"
L2_GRID = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]


def window_rows(
    embedder: Embedder, examples: list[Example], lexical: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels, sample weights and owning example index, one row per window."""
    pieces, owner = [], []
    for i, example in enumerate(examples):
        for piece in windows(example.text):
            pieces.append(piece)
            owner.append(i)
    x = features(embedder, pieces).astype(np.float64)
    if not lexical:
        x[:, EMBEDDING_DIM:] = 0.0
    owners = np.asarray(owner)
    labels = np.asarray([examples[i].label for i in owner], dtype=np.float64)
    per_text = 1.0 / np.bincount(owners, minlength=len(examples))[owners]
    positives = sum(e.label for e in examples)
    class_weight = np.where(
        labels == 1,
        len(examples) / (2 * positives),
        len(examples) / (2 * (len(examples) - positives)),
    )
    return x, labels, per_text * class_weight, owners


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weighted logistic regression, L2 on the weights (not the bias), by Newton's method."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(xb @ beta)))
        grad = xb.T @ (w * (p - y)) + penalty * beta
        hess = (xb * (w * p * (1 - p))[:, None]).T @ xb + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def text_scores(
    x: np.ndarray, owners: np.ndarray, n: int, weights: np.ndarray, bias: float
) -> np.ndarray:
    probs = 1.0 / (1.0 + np.exp(-(x @ weights + bias)))
    out = np.zeros(n)
    np.maximum.at(out, owners, probs)
    return out


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold with the best F1 (ties: the higher threshold, fewer false positives)."""
    best = (0.0, 0.5)
    for t in np.unique(np.round(scores, 4)):
        predicted = scores >= t
        tp = int(np.sum(predicted & (labels == 1)))
        fp = int(np.sum(predicted & (labels == 0)))
        fn = int(np.sum(~predicted & (labels == 1)))
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        if f1 >= best[0]:
            best = (f1, float(t))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="do not write the weights file")
    parser.add_argument("--no-lexical", action="store_true", help="embedding features only")
    args = parser.parse_args()

    data = splits()
    embedder = Embedder()
    lexical = not args.no_lexical
    x_tr, y_tr, w_tr, _ = window_rows(embedder, data["train"], lexical)
    x_va, _, _, o_va = window_rows(embedder, data["val"], lexical)
    y_va = np.asarray([e.label for e in data["val"]])
    print(
        f"train: {len(data['train'])} texts ({int(sum(e.label for e in data['train']))} positive), "
        f"{len(x_tr)} windows; val: {len(data['val'])} texts"
    )

    best: tuple[float, float, float, np.ndarray, float] | None = None
    for l2 in L2_GRID:
        weights, bias = fit(x_tr, y_tr, w_tr, l2)
        f1, threshold = best_threshold(text_scores(x_va, o_va, len(y_va), weights, bias), y_va)
        print(f"  l2={l2:<5} val F1={f1:.3f} at threshold {threshold:.4f}")
        if best is None or f1 > best[0]:
            best = (f1, l2, threshold, weights, bias)
    assert best is not None
    f1, l2, threshold, weights, bias = best
    print(f"chosen: l2={l2}, threshold={threshold:.4f} (val F1 {f1:.3f})")
    if args.dry_run:
        return
    model = {
        "about": "turnout injection detector: logistic regression over all-MiniLM-L6-v2 "
        "embedding + lexical cues; rebuilt by bench/guardrails/train_injection.py",
        "l2": l2,
        "threshold": round(threshold, 4),
        "bias": round(bias, 6),
        "weights": [round(float(v), 6) for v in weights],
    }
    blob = (json.dumps(model, separators=(",", ":")) + "\n").encode()
    OUT.write_bytes(blob)
    print(
        f"wrote {OUT.relative_to(ROOT)} ({len(blob)} bytes), sha256 {hashlib.sha256(blob).hexdigest()}"
    )


if __name__ == "__main__":
    main()
