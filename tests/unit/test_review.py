import csv

import pytest

from medgen_ray.cli import main
from medgen_ray.core.batch import from_rows
from medgen_ray.curate.review import draw_review, score_review
from medgen_ray.curate.sink import write_batch


def _dataset(tmp, clip):
    rows = [{"video_id": f"v{i}", "clip_id": f"v{i}_c", "clip_uri": str(clip), "source_uri": str(clip),
             "t_start": 0.0, "t_end": 6.0, "n_candidates": 1, "reject_stage": "ocr" if i % 3 == 0 else "",
             "reject_reason": "ocr: burned-in text" if i % 3 == 0 else "", "error": ""} for i in range(12)]
    write_batch(str(tmp), from_rows(rows))


def test_draw_and_score(tmp_path, one_video, capsys):
    _dataset(tmp_path, one_video)
    path = draw_review(str(tmp_path), "kept", sample=5, seed=1)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 5 and len({r["clip_id"] for r in rows}) == 5
    assert (tmp_path / "review" / "kept.html").exists() and (tmp_path / "review" / "kept.jpg").exists()
    assert draw_review(str(tmp_path), "kept", sample=5, seed=1).read_text() == path.read_text()  # seeded
    ocr = list(csv.DictReader(draw_review(str(tmp_path), "ocr", sample=200).open()))
    assert len(ocr) == 4 and all(r["reason"].startswith("ocr:") for r in ocr)
    # the paper's rule: >= 95% "clean or slightly noisy" (3 clean + 2 slightly noisy passes)
    for verdicts, rate, ok in ((["clean"] * 5, 1.0, True), (["clean"] * 3 + ["slightly noisy"] * 2, 0.6, True),
                               (["clean"] * 4 + ["noisy"], 0.8, False)):
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["n", "clip_id", "video_id", "uri", "reason", "verdict"])
            for k, v in enumerate(verdicts):
                w.writerow([k, rows[k]["clip_id"], "", "", "", v])
        res = score_review(str(path))
        assert res["clean_rate"] == rate and res["accepted"] is ok
    assert main(["review", str(tmp_path), "--score", str(path)]) == 0
    assert '"clean_rate": 0.8' in capsys.readouterr().out


def test_bad_verdict_and_empty_stage(tmp_path, one_video):
    _dataset(tmp_path, one_video)
    with pytest.raises(ValueError, match="no rows for stage 'borders'"):
        draw_review(str(tmp_path), "borders", 10)
    path = tmp_path / "r.csv"
    path.write_text("n,clip_id,verdict\n0,a,great\n")
    with pytest.raises(ValueError, match="great"):
        score_review(str(path))
