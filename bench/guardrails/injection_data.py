"""The labelled data behind the injection detector, and its fixed train / validation / test split.

Training sources are split by a hash of each row's `group` (70 / 15 / 15), so near-duplicates
(variants of one jailbreak, one task prompt with several attacks) never straddle two splits.
The transfer sets (bastioncorpus, jailbreak-corpus-mini) and the benign routing suites named in
`benign_suites` are never trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DATA = HERE / "data"
SHARED_SUITES = ROOT.parent / "shared" / "data" / "routing"

# Sources the detector is fitted on (their test split is held out).
TRAIN_FILES = [
    "garak.jsonl",
    "promptinject.jsonl",
    "handwritten_injections.jsonl",
    "handwritten_benign.jsonl",
]
TRAIN_SUITES = [ROOT / "bench" / "routing" / "llm-tasks"]
# Never trained on: ordinary requests that must pass.
HELD_OUT_SUITES = [
    ROOT / "bench" / "routing" / "support-desk",
    SHARED_SUITES / "clinc-dev",
    SHARED_SUITES / "general-dev",
    SHARED_SUITES / "seed",
]


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    source: str
    group: str


def read_jsonl(path: Path) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    return [Example(r["text"], int(r["label"]), r["source"], r["group"]) for r in rows]


def request_library() -> list[Example]:
    path = ROOT / "src" / "turnout" / "routing" / "data" / "request_library.yaml"
    topics = yaml.safe_load(path.read_text(encoding="utf-8"))["topics"]
    return [
        Example(text, 0, "turnout/request_library", "lib-" + text)
        for topic in topics
        for text in topic["requests"]
    ]


def suite_requests(suite: Path) -> list[Example]:
    """Every user turn of every case: each is a request the gateway would see."""
    out = []
    for line in (suite / "cases.jsonl").read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        case = json.loads(line)
        for turn in case["messages"]:
            if turn["role"] == "user" and turn["content"].strip():
                out.append(Example(turn["content"], 0, f"routing/{suite.name}", case["id"]))
    return out


def split_of(group: str) -> str:
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 70 else "val" if bucket < 85 else "test"


def training_pool() -> list[Example]:
    pool = [e for name in TRAIN_FILES for e in read_jsonl(DATA / name)]
    pool += request_library()
    for suite in TRAIN_SUITES:
        pool += suite_requests(suite)
    return pool


def splits() -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for example in training_pool():
        out[split_of(example.group)].append(example)
    return out


def eval_sets() -> dict[str, list[Example]]:
    """Every set injection_eval.py reports on; none of them is used to fit or to pick the threshold."""
    sets = {
        "held-out split (test 15% of training sources)": splits()["test"],
        "bastioncorpus (transfer, never trained on)": read_jsonl(DATA / "bastioncorpus.jsonl"),
        "jailbreak-corpus-mini (transfer, positives only)": read_jsonl(
            DATA / "jailbreak_corpus_mini.jsonl"
        ),
    }
    for suite in HELD_OUT_SUITES:
        if (suite / "cases.jsonl").exists():
            sets[f"routing suite {suite.name} (benign only)"] = suite_requests(suite)
    return sets
