"""Helpers for `dict[str, np.ndarray]` batches, the format every stage takes and returns."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from medgen_ray.schema import ERROR, REJECT_REASON, REJECT_STAGE, default_for

Batch = dict[str, np.ndarray]


def batch_len(batch: Batch) -> int:
    """Rows in a batch."""
    return len(next(iter(batch.values()))) if batch else 0


def to_rows(batch: Batch) -> list[dict[str, Any]]:
    """A columnar batch as a list of row dicts (numpy scalars made Python values)."""
    n = batch_len(batch)
    return [{k: _scalar(v[i]) for k, v in batch.items()} for i in range(n)]


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_rows(rows: list[dict[str, Any]], columns: Iterable[str] | None = None) -> Batch:
    """Rows -> columns; a row missing a column gets that column's default.

    Text columns become object arrays, array-valued columns object arrays of ndarrays (Ray
    stores them as tensor columns), numbers numeric arrays.
    """
    keys: list[str] = list(columns) if columns is not None else []
    if columns is None:
        seen = set()
        for row in rows:
            for k in row:
                if k not in seen:
                    seen.add(k)
                    keys.append(k)
    out: Batch = {}
    for k in keys:
        values = [row.get(k, default_for(k)) for row in rows]
        out[k] = _column(values)
    return out


def _column(values: list[Any]) -> np.ndarray:
    if any(isinstance(v, (str, bytes, np.ndarray, list, dict)) or v is None for v in values):
        arr = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            arr[i] = v
        return arr
    return np.asarray(values)


def is_active(batch: Batch) -> np.ndarray:
    """Rows still in play: neither rejected nor errored."""
    n = batch_len(batch)
    reason = batch.get(REJECT_REASON, np.full(n, "", dtype=object))
    error = batch.get(ERROR, np.full(n, "", dtype=object))
    return np.array([not r and not e for r, e in zip(reason, error)], dtype=bool)


def row_active(row: dict[str, Any]) -> bool:
    """True when a row is neither rejected nor errored."""
    return not row.get(REJECT_REASON) and not row.get(ERROR)


def mark_error(row: dict[str, Any], stage: str, message: str) -> None:
    """Record a data error on a row, naming the stage."""
    row[REJECT_STAGE] = stage
    row[ERROR] = f"{stage}: {message}"


def mark_reject(row: dict[str, Any], stage: str, reason: str) -> None:
    """Record a rejection with its reason on a row, naming the stage."""
    row[REJECT_STAGE] = stage
    row[REJECT_REASON] = f"{stage}: {reason}"


def ensure_status(batch: Batch) -> Batch:
    """The batch with the status columns (reject_stage, reject_reason, error) present."""
    n = batch_len(batch)
    for col in (REJECT_STAGE, REJECT_REASON, ERROR):
        if col not in batch:
            batch[col] = np.full(n, "", dtype=object)
    return batch
