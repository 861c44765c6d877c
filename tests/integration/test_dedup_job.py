"""`medgen dataset dedup` on a local Ray bound to 127.0.0.1, for a dataset curated before the
clip signatures were stored: the Ray pass computes them (resumably), then the view removes the
generated duplicates and only them."""

import pyarrow.parquet as pq
import pytest

from medgen_ray.cli import main
from medgen_ray.core import dataflow
from medgen_ray.schema import CLIP_ID
from tests.unit.test_dedup import DISTINCT, DUPS, _manifest, clips, signed  # noqa: F401 (fixtures)


def test_dedup_computes_missing_signatures_on_ray_then_removes_duplicates(ray_cluster, signed, tmp_path,  # noqa: F811
                                                                         monkeypatch):
    base = _manifest(tmp_path, signed, with_signatures=False)
    out = tmp_path / "out"
    assert main(["dataset", "dedup", str(base), "--out", str(out), "curate.classify.clip_model=clip/tiny",
                 "curate.dedup.pool.num_cpus=0.5"]) == 0
    assert sorted(pq.read_table(out / "manifest").column(CLIP_ID).to_pylist()) == sorted(DISTINCT)
    assert sorted(pq.read_table(out / "rejects").column(CLIP_ID).to_pylist()) == sorted(DUPS)
    assert len(pq.read_table(out / "signatures")) == len(DISTINCT) + len(DUPS)

    # A rerun (after a kill, say) finds every signature written: no Ray work, the same answer.
    for name in ("manifest", "rejects", "dedup.json"):
        path = out / name
        if path.is_dir():
            for p in path.iterdir():
                p.unlink()
            path.rmdir()
        else:
            path.unlink()
    monkeypatch.setattr(dataflow, "init_ray", lambda *_: pytest.fail("signatures were recomputed"))
    assert main(["dataset", "dedup", str(base), "--out", str(out), "curate.classify.clip_model=clip/tiny"]) == 0
    assert sorted(pq.read_table(out / "rejects").column(CLIP_ID).to_pylist()) == sorted(DUPS)
