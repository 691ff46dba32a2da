"""Built-in evidence for "no route", scored against the operator's routes when a router is built.

- chit-chat lines: things said to an assistant that ask for no task; a line a route itself
  claims (a route about small talk, say) becomes that route's example instead;
- background requests: generic asks across unrelated domains, whose mean score per route is the
  bar a request must clear to belong to that route at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import yaml

from turnout.routing.embedder import Embedder


@dataclass(frozen=True, slots=True)
class NoRouteEvidence:
    chit_chat: np.ndarray
    background: np.ndarray


def load_no_route_evidence(embedder: Embedder) -> NoRouteEvidence:
    lines = yaml.safe_load(
        files("turnout.routing").joinpath("data/no_route.yaml").read_text("utf-8")
    )
    return NoRouteEvidence(
        chit_chat=embedder.embed(lines["chit_chat"]),
        background=embedder.embed(lines["background"]),
    )
