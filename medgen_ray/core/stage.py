"""Base of the row-wise curation stages.

A stage has a cheap `__init__(cfg)`, an expensive `setup()` (models, once per actor) and a pure
`__call__(batch) -> batch`. It never imports ray: the Ray Data adapter (core/dataflow.py) wraps it. Rows already rejected or
errored pass through untouched; a `DataError` raised for one row becomes that row's `error`
and the rest of the batch goes on. Any other exception is a bug and fails the job.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable, Sequence

from medgen_ray.core.batch import Batch, ensure_status, from_rows, mark_error, row_active, to_rows
from medgen_ray.core.errors import DATA_ERRORS
from medgen_ray.core.observability import log_row_error

Row = dict[str, Any]


class StageOrderError(ValueError):
    """A stage reads a column that no stage before it (nor the input rows) provides."""


def check_chain(stages: Sequence[tuple[str, Any]], given: Iterable[str]) -> None:
    """Check a pipeline's stages in order against their contracts (`reads`, `adds`, `drops`
    class attributes) before anything runs; raises StageOrderError naming the stage that reads a
    missing column and the stage that adds (or dropped) it, or saying that none does."""
    available = set(given)
    dropped_by: dict[str, str] = {}
    for i, (name, stage) in enumerate(stages):
        problems = []
        for col in getattr(stage, "reads", ()):
            if col in available:
                continue
            later = [n for n, s in stages[i + 1:] if col in getattr(s, "adds", ())]
            if col in dropped_by:
                problems.append(f"column {col!r} was dropped by stage {dropped_by[col]!r} before it")
            elif later:
                problems.append(f"column {col!r} is added by stage {later[0]!r}, which comes after it")
            else:
                problems.append(f"column {col!r} is added by no stage before it (nor by the input rows)")
        if problems:
            raise StageOrderError(f"stage {name!r} (step {i + 1}) cannot run there: " + "; ".join(problems))
        for col in getattr(stage, "adds", ()):
            available.add(col)
            dropped_by.pop(col, None)
        for col in getattr(stage, "drops", ()):
            available.discard(col)
            dropped_by[col] = name


class RowStage:
    """Base of row-wise stages: `process(row)` per active row, errors recorded on the row.

    The contract: `reads` are the columns the stage needs, `adds` those it writes, `drops` those
    it removes (heavy columns after their last reader); `check_chain` verifies a pipeline with them.
    """

    name: ClassVar[str] = "stage"
    reads: ClassVar[tuple[str, ...]] = ()
    adds: ClassVar[tuple[str, ...]] = ()
    drops: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._ready = False

    def setup(self) -> None:
        """Load models; called once per actor (or lazily on first batch)."""

    def process(self, row: Row) -> Row | list[Row]:
        raise NotImplementedError

    def empty_values(self) -> Row:
        """Values of `adds` for rows this stage does not process (rejected upstream)."""
        return {}

    def __call__(self, batch: Batch) -> Batch:
        if not self._ready:
            self.setup()
            self._ready = True
        batch = ensure_status(batch)
        out: list[Row] = []
        for row in to_rows(batch):
            if not row_active(row):
                out.append({**self.empty_values(), **row})
                continue
            try:
                result = self.process(row)
            except DATA_ERRORS as exc:
                mark_error(row, self.name, str(exc) or type(exc).__name__)
                log_row_error(self.name, row, row["error"])
                result = {**self.empty_values(), **row}
            out.extend(result if isinstance(result, list) else [result])
        columns = [c for c in batch if c not in self.drops]
        columns += [c for c in self.adds if c not in columns]
        for row in out:
            for k in row:
                if k not in columns and k not in self.drops:
                    columns.append(k)
        return from_rows(out, columns)

