"""NAB score of `score_series` and of the seed's z-score, side by side: prints one JSON line.

Data: `NAB_DATA_DIR` or ../shared/nab beside the repository; the scorer is that folder's
`score.py` (imported, not copied; override with `NAB_SCORER`). For each profile: the score at
`DEFAULT_THRESHOLD`, at the best corpus-wide threshold, and per category at both; then
leave-one-category-out ("loco"): each category scored at the threshold that is best on the
other categories, and the corpus total of those held-out scores, next to the in-sample score.
A detector whose loco total falls far below its in-sample score owes it to threshold tuning.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from receiver.detect.outliers import (
    DEFAULT_THRESHOLD,
    score_seed,
    score_series,
)

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
Detector = Callable[[npt.ArrayLike, npt.ArrayLike], npt.NDArray[np.float64]]


def _default_data_dir() -> str:
    # ../shared/nab beside the checkout, or beside the folder of worktrees
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "nab" / "score.py").is_file():
            return str(base / "shared" / "nab")
    return str(REPO.parent / "shared" / "nab")


def load_scorer() -> tuple[ModuleType, str]:
    data_dir = os.environ.get("NAB_DATA_DIR") or _default_data_dir()
    scorer = os.environ.get("NAB_SCORER") or str(Path(data_dir) / "score.py")
    if not Path(scorer).is_file():
        scorer = str(Path(_default_data_dir()) / "score.py")
    spec = importlib.util.spec_from_file_location("nab_score", scorer)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import the NAB scorer at {scorer}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, data_dir


def _num(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, 3)


def evaluate(
    nab: ModuleType, corpus: list[Any], scores: list[Any], profiles: dict[str, Any]
) -> dict[str, Any]:
    """Scores at the default and the best threshold, for the corpus and per category."""
    table = nab.Table(corpus, scores)
    out: dict[str, Any] = {}
    cats = sorted({df.rel.split("/")[0] for df in corpus})
    for name in PROFILES:
        cm = profiles[name]
        default = nab.optimise(table, cm, fixed=DEFAULT_THRESHOLD)
        best = nab.optimise(table, cm)
        per_cat: dict[str, Any] = {}
        for cat in cats:
            idx = [i for i, df in enumerate(corpus) if df.rel.startswith(cat + "/")]
            sub = nab.Table([corpus[i] for i in idx], [scores[i] for i in idx])
            at_default = nab.optimise(sub, cm, fixed=DEFAULT_THRESHOLD)
            at_best = nab.optimise(sub, cm, fixed=best["threshold"])
            per_cat[cat] = {
                "default": _num(at_default["normalised"]),
                "at_best": _num(at_best["normalised"]),
                "raw_default": round(at_default["raw"], 3),
                "windows": sub.n_windows,
            }
        out[name] = {
            "default": _num(default["normalised"]),
            "best": _num(best["normalised"]),
            "best_threshold": _num(best["threshold"]),
            "per_category": per_cat,
            "loco": loco(nab, corpus, scores, cm, cats),
        }
    return out


def loco(
    nab: ModuleType, corpus: list[Any], scores: list[Any], cm: Any, cats: list[str]
) -> dict[str, Any]:
    """Leave one category out: pick the threshold on the others, score the one left out.

    `total` sums the held-out raw scores over all categories and normalises them like the
    corpus score, so it reads on the same scale as `default` / `best`.
    """
    held: dict[str, Any] = {}
    raw = 0.0
    for cat in cats:
        inside = [i for i, df in enumerate(corpus) if df.rel.startswith(cat + "/")]
        others = [i for i in range(len(corpus)) if i not in inside]
        train = nab.Table([corpus[i] for i in others], [scores[i] for i in others])
        threshold = nab.optimise(train, cm)["threshold"]
        test = nab.Table([corpus[i] for i in inside], [scores[i] for i in inside])
        res = nab.optimise(test, cm, fixed=threshold)
        raw += res["raw"]
        held[cat] = {
            "threshold": _num(threshold),
            "score": _num(res["normalised"]),
            "raw": round(res["raw"], 3),
        }
    null, perfect = nab.Table(corpus, scores).null_and_perfect(cm)
    total = 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan
    return {"total": _num(total), "per_category": held}


def run(detector: Detector, corpus: list[Any]) -> tuple[list[Any], float]:
    t0 = time.perf_counter()
    scores = [np.asarray(detector(df.timestamps, df.values)) for df in corpus]
    return scores, time.perf_counter() - t0


def causal(detector: Detector, corpus: list[Any], scores: list[Any]) -> bool:
    """Prefix consistency (what score.py --check-causal tests): thirds of every file."""
    for df, full in zip(corpus, scores, strict=True):
        for cut in (df.n // 3, 2 * df.n // 3):
            part = np.asarray(detector(df.timestamps[:cut], df.values[:cut]))
            if not np.allclose(part, full[:cut], rtol=0, atol=1e-9):
                return False
    return True


def main() -> None:
    nab, data_dir = load_scorer()
    corpus = nab.load_corpus(data_dir)
    profiles = nab.load_profiles(data_dir)
    ours, secs = run(score_series, corpus)
    seed, seed_secs = run(score_seed, corpus)
    result = {
        "bench": "nab",
        "data_dir": os.path.normpath(data_dir),
        "files": len(corpus),
        "rows": int(sum(df.n for df in corpus)),
        "windows": int(sum(len(df.windows) for df in corpus)),
        "default_threshold": DEFAULT_THRESHOLD,
        "detector": "receiver.detect.outliers:score_series",
        "seconds": round(secs, 2),
        "causal": causal(score_series, corpus, ours),
        "scores": evaluate(nab, corpus, ours, profiles),
        "seed": {
            "detector": "receiver.detect.outliers:score_seed (z over 10 values, |z| >= 3)",
            "seconds": round(seed_secs, 2),
            "scores": evaluate(nab, corpus, seed, profiles),
        },
    }
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
