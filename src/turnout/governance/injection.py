"""Prompt-injection and jailbreak detection on the CPU, offline, from the router's own embeddings.

A logistic regression over the all-MiniLM-L6-v2 sentence vector that the embedded router already
computes, plus a few lexical cues that the embedding blurs (an "ignore previous instructions"
phrase, a chat-template role tag). It needs no extra model and no network: the weights are a small
file shipped with turnout and checked against a pinned sha256, so a changed or corrupted file fails
loudly at start-up. bench/guardrails/train_injection.py rebuilds it from public labelled data.

Long texts are cut into a bounded number of windows (the first and last window always included),
each scored on its own, and the text takes its highest window score: an injection appended to a long
pasted document is still seen, and a request never costs more than MAX_WINDOWS embeddings.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from turnout.routing.embedder import EMBEDDING_DIM, Embedder, verified_bytes

WEIGHTS_SHA256 = "9b955f8e913a14dfea3e0cfa9d92bf32f6ef4b6c35bd9e3d7e5880c45323fb88"
# 256 WordPiece tokens (the embedder's limit) cover about this many characters of English, so
# each window is seen whole by the model.
WINDOW_CHARS = 1000
# Per-request cost bound: texts longer than MAX_WINDOWS * WINDOW_CHARS are sampled at evenly
# spaced windows, always including the first and the last.
MAX_WINDOWS = 3

# Cues the sentence vector underweights: each is a binary feature beside the embedding.
_LEXICAL = [
    # an instruction to drop earlier instructions ("ignore all previous instructions")
    (
        r"\b(ignore|disregard|forget|override|bypass|skip)\b[^.!?\n]{0,40}\b(previous|prior|"
        r"above|earlier|preceding|initial|original|all|any|your)\b[^.!?\n]{0,30}\b(instructions?|"
        r"prompts?|rules|directives|guidelines|commands|polic(y|ies)|context)\b"
    ),
    # a request to disclose the hidden prompt (a bare mention of "system prompt" is not one)
    (
        r"\b(reveal|show|print|repeat|output|display|tell me|give me|leak|dump|share|copy)\b"
        r"[^.!?\n]{0,40}\b(your|the|its)\s+(system|initial|hidden|secret|original|developer)\s+"
        r"(prompt|instructions?|message)"
    ),
    # the model's own instructions as the object ("your system prompt", "your rules"), which
    # separates "what is your system prompt?" from "what is a system prompt?"
    (
        r"\byour\s+(own\s+)?(system|initial|hidden|original|secret|internal|safety|content)?\s*"
        r"(prompt|instructions?|rules|guidelines|programming|configuration|filters?|restrictions)\b"
    ),
    # named jailbreak personas and modes
    r"\b(DAN|do anything now|developer mode|jailbr(eak|oken)|god ?mode|unfiltered|uncensored)\b",
    # chat-template and role delimiters injected into user text
    r"<\|?(im_start|im_end|system|endoftext)\|?>|\[/?(INST|SYSTEM)\]|</?(system|instructions?)>",
    # persona lock-in ("stay in character", "from now on you are")
    r"\b(stay in character|break character|from now on,? you (are|will)|you are no longer)\b",
]
_PATTERNS = [re.compile(p, re.IGNORECASE) for p in _LEXICAL]
N_FEATURES = EMBEDDING_DIM + len(_LEXICAL)


class InjectionModelError(RuntimeError):
    """The detector's weights cannot be loaded (missing file, wrong checksum, wrong shape)."""


def weights_path() -> Path:
    return Path(
        str(importlib.resources.files("turnout.governance").joinpath("data/injection_lr.json"))
    )


def windows(text: str, max_windows: int = MAX_WINDOWS) -> list[str]:
    """At most max_windows slices of WINDOW_CHARS, evenly spaced, first and last included."""
    text = text.strip()
    if len(text) <= WINDOW_CHARS or max_windows <= 1:
        return [text[:WINDOW_CHARS]]
    count = min(max_windows, -(-len(text) // WINDOW_CHARS))
    last = len(text) - WINDOW_CHARS
    starts = sorted({round(i * last / (count - 1)) for i in range(count)})
    return [text[s : s + WINDOW_CHARS] for s in starts]


def lexical_features(texts: Sequence[str]) -> np.ndarray:
    """One 0/1 column per cue in _LEXICAL."""
    out = np.zeros((len(texts), len(_PATTERNS)), dtype=np.float32)
    for i, text in enumerate(texts):
        for j, pattern in enumerate(_PATTERNS):
            if pattern.search(text):
                out[i, j] = 1.0
    return out


def features(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """The classifier's input for each text (already one window): embedding, then lexical cues."""
    return np.hstack([embedder.embed(texts), lexical_features(texts)])


def _load(path: Path) -> tuple[np.ndarray, float, float]:
    data = verified_bytes(path, WEIGHTS_SHA256, InjectionModelError)
    try:
        model = json.loads(data)
        weights = np.asarray(model["weights"], dtype=np.float32)
        bias = float(model["bias"])
        threshold = float(model["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InjectionModelError(f"{path} is not a detector weights file: {exc}") from exc
    if weights.shape != (N_FEATURES,):
        raise InjectionModelError(f"{path} has {weights.shape} weights, expected ({N_FEATURES},)")
    return weights, bias, threshold


class InjectionDetector:
    """Scores text in [0, 1]; at or above `threshold` it is treated as an injection attempt."""

    def __init__(
        self, embedder: Embedder, threshold: float | None = None, *, max_windows: int = MAX_WINDOWS
    ) -> None:
        """`max_windows` trades coverage of long texts for latency (each window is one
        embedding of up to 256 tokens); the shipped weights were fitted with MAX_WINDOWS."""
        self._embedder = embedder
        self._max_windows = max(1, max_windows)
        self._weights, self._bias, default = _load(weights_path())
        self.threshold: float = default if threshold is None else threshold

    def score(self, text: str) -> float:
        return float(self.scores([text])[0])

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """One probability per text: the maximum over its windows, embedded in one batch."""
        pieces: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for piece in windows(text, self._max_windows):
                pieces.append(piece)
                owner.append(i)
        out = np.zeros(len(texts), dtype=np.float64)
        if not pieces:
            return out
        logits = features(self._embedder, pieces) @ self._weights + self._bias
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        np.maximum.at(out, np.asarray(owner), probs)
        return out

    def is_injection(self, text: str) -> bool:
        return self.score(text) >= self.threshold
