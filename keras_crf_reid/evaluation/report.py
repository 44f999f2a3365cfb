"""Result reporting: mean/std over evaluation splits, a paper-style Markdown table, run files.

A run directory gets `flags.json` (how it was run), `per_split.json` (every split's metrics),
`results.json` (mean and std per method) and `results.md` (the table, laid out like Table 1 of
the CRF paper). Each file is written atomically so a crash never leaves a half-written report.
"""
from __future__ import annotations

import dataclasses
import decimal
import hashlib
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from keras_crf_reid.atomic import write_atomic

# Table columns: (metric key, header), in the paper's order.
TABLE_COLUMNS = (("rank1", "Rank-1"), ("rank5", "Rank-5"), ("rank10", "Rank-10"),
                 ("rank20", "Rank-20"), ("mAP", "mAP"))
NUM_SPLITS_KEY = "num_splits"


def _is_number(v: Any) -> bool:
    numeric = isinstance(v, (int, float, np.integer, np.floating))
    return numeric and not isinstance(v, (bool, np.bool_))


def aggregate(per_split: Sequence[Mapping[str, Any]]) -> dict:
    """Mean and standard deviation of each numeric metric over splits.

    Returns {metric: {"mean": m, "std": s}, ..., "num_splits": n}. The std is the sample standard
    deviation (ddof=1), 0.0 for a single split. Non-numeric entries (names, notes) are ignored; a
    numeric metric missing from some split, or a non-finite value, raises ValueError.
    """
    if len(per_split) == 0:
        raise ValueError("aggregate needs at least one split")
    keys = [k for k, v in per_split[0].items() if _is_number(v)]
    for k in {k for s in per_split for k, v in s.items() if _is_number(v)} - set(keys):
        keys.append(k)
    out: dict[str, Any] = {}
    for k in keys:
        values = []
        for i, split in enumerate(per_split):
            if k not in split or not _is_number(split[k]):
                raise ValueError(f"split {i} has no numeric value for metric {k!r}")
            if not math.isfinite(float(split[k])):
                raise ValueError(f"split {i}: metric {k!r} is not finite ({split[k]})")
            values.append(float(split[k]))
        arr = np.asarray(values)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
        out[k] = {"mean": float(arr.mean()), "std": std}
    out[NUM_SPLITS_KEY] = len(per_split)
    return out


def _one_decimal(x: float) -> str:
    """Rounds half up on the shortest decimal form (51.25 -> "51.3"), as tables in papers do."""
    d = decimal.Decimal(repr(float(x))).quantize(decimal.Decimal("0.1"), decimal.ROUND_HALF_UP)
    return str(abs(d) if d == 0 else d)


def _cell(value: Any, show_std: bool) -> str:
    if isinstance(value, Mapping):
        if "mean" not in value:
            return "-"
        mean = _one_decimal(value["mean"])
        return f"{mean} ± {_one_decimal(value.get('std', 0.0))}" if show_std else mean
    if _is_number(value):
        return _one_decimal(value)
    return "-"


def results_table(rows: Mapping[str, Mapping[str, Any]], title: str) -> str:
    """A Markdown table: Method | Rank-1 | Rank-5 | Rank-10 | Rank-20 | mAP, values in percent.

    Each row is an `aggregate` result ("mean ± std", std left out when it covers one split) or
    a plain {metric: value} dict of one run. Missing metrics show as "-".
    """
    header = "| Method | " + " | ".join(h for _, h in TABLE_COLUMNS) + " |"
    align = "|:---|" + "---:|" * len(TABLE_COLUMNS)
    lines = [f"### {title}", "", header, align] if title else [header, align]
    for name, metrics in rows.items():
        show_std = int(metrics.get(NUM_SPLITS_KEY, 1)) > 1
        cells = [_cell(metrics.get(k), show_std) for k, _ in TABLE_COLUMNS]
        method = str(name).replace("|", "\\|")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _jsonable(obj: Any) -> Any:
    """Recursively converts numpy values, dataclasses, tuples and paths into JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def _splits_record(splits: Any) -> Any:
    """Where the evaluation splits came from: a file's path and SHA-256, or the splits."""
    if isinstance(splits, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(splits))
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            return {"path": path, "error": f"cannot read splits file ({e.strerror or e})"}
        return {"path": path, "sha256": digest}
    return _jsonable(splits)


def to_json(obj: Any) -> str:
    """The text of every JSON file a run writes: numpy values, tuples and dataclasses converted,
    non-finite numbers written as null (strict JSON), indented."""
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"


def write_run_report(out_dir: str, flags: Mapping[str, Any], splits_json_path_or_obj: Any,
                     per_split: Mapping[str, Sequence[Mapping[str, Any]]],
                     extra: Mapping[str, Any] | None = None, title: str | None = None) -> dict:
    """Writes flags.json, per_split.json, results.json and results.md into `out_dir`.

    `per_split` maps a method name to its per-split metric dicts (as from `cmc_summary`).
    results.json holds the aggregated metrics per method, the splits' provenance (a path is
    recorded with its SHA-256) and `extra`. Everything is computed before any file is written.
    Returns {"flags", "per_split", "results", "markdown"} -> file path.
    """
    if not per_split:
        raise ValueError("per_split is empty: nothing to report")
    aggregated = {name: aggregate(splits) for name, splits in per_split.items()}
    if title is None:
        dataset = flags.get("dataset") if isinstance(flags, Mapping) else None
        title = f"Results on {dataset}" if dataset else "Results"
    texts = {
        "flags": ("flags.json", to_json(flags)),
        "per_split": ("per_split.json", to_json(per_split)),
        "results": ("results.json", to_json({"results": aggregated,
                                           "splits": _splits_record(splits_json_path_or_obj),
                                           "extra": extra or {}})),
        "markdown": ("results.md", results_table(aggregated, title)),
    }
    return {key: write_atomic(os.path.join(out_dir, name), text)
            for key, (name, text) in texts.items()}
