"""Parquet parts: batches to Arrow tables by a schema, atomic part writes, part listing and reads.

Every job writes its output as `<folder>/<name>/part-*.parquet` (local or any fsspec URI),
each part written to a temporary name and renamed, so a reader never sees half a part.
"""

from __future__ import annotations

import math
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medgen_ray.core.batch import Batch
from medgen_ray.schema import default_for


def table_from_batch(batch: Batch, rows: np.ndarray, schema: pa.Schema) -> pa.Table:
    """The given rows of a batch as a table of `schema`; absent columns get their defaults."""
    cols = []
    for field in schema:
        if field.name in batch:
            values = [_clean(batch[field.name][i], field.type) for i in rows]
        else:
            values = [_clean(default_for(field.name), field.type)] * len(rows)
        cols.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _clean(v: Any, typ: pa.DataType) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if pa.types.is_integer(typ):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
    if pa.types.is_floating(typ):
        return None if v is None else float(v)
    if pa.types.is_string(typ):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    if pa.types.is_list(typ):
        if v is None or isinstance(v, float) or len(v) == 0:
            return None
        return [int(x) for x in v] if pa.types.is_integer(typ.value_type) else [float(x) for x in v]
    return v


def write_table_atomic(fs, path: str, table: pa.Table) -> None:
    """Write `table` to `path` on `fs` through a hidden temporary file and a rename."""
    tmp = path.rsplit("/", 1)[0] + "/." + path.rsplit("/", 1)[1] + ".tmp"
    with fs.open(tmp, "wb") as fh:
        pq.write_table(table, fh)
    fs.mv(tmp, path)


def list_parts(output: str, name: str) -> list[str]:
    """Sorted paths of `<output>/<name>/part-*` (empty when the folder does not exist)."""
    fs, root = fsspec.core.url_to_fs(output)
    folder = f"{root}/{name}"
    if not fs.exists(folder):
        return []
    return sorted(p for p in fs.ls(folder, detail=False) if p.rsplit("/", 1)[-1].startswith("part-"))


def read_part(fs, path: str, columns: list[str] | None = None) -> pa.Table:
    """One part file (optionally only `columns`) as an Arrow table."""
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh, columns=columns)
