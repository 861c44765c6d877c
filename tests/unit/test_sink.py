import pyarrow.parquet as pq

from medgen_ray.core.batch import from_rows
from medgen_ray.curate.sink import build_summary, drop_duplicates, drop_unfinished, source_progress, write_batch


def _clip(vid, k, n, reject=""):
    return {"video_id": vid, "clip_id": f"{vid}_{k}", "source_uri": f"/{vid}.mp4", "t_start": float(k),
            "t_end": float(k + 6), "n_candidates": n, "reject_reason": reject, "reject_stage": "cut" if reject else "",
            "error": "", "duration": 30.0}


def _video(vid, stage, reason="", error=""):
    return {"video_id": vid, "clip_id": "", "source_uri": f"/{vid}.mp4", "n_candidates": 0, "reject_stage": stage,
            "reject_reason": reason, "error": error}


def test_parts_progress_and_summary(tmp_path):
    out = str(tmp_path)
    write_batch(out, from_rows([_clip("a", 0, 2), _video("b", "probe", error="probe: empty file")]))
    write_batch(out, from_rows([_clip("c", 0, 3), _video("d", "metadata", reason="metadata: not medical")]))
    finished, unfinished = source_progress(out)
    assert finished == {"b", "d"} and unfinished == {"a", "c"}
    write_batch(out, from_rows([_clip("a", 10, 2, reject="cut: failed")]))
    finished, unfinished = source_progress(out)
    assert "a" in finished and unfinished == {"c"}
    s = build_summary(out, n_inputs=4)
    assert (s["videos_kept"], s["videos_rejected"], s["videos_errored"]) == (2, 1, 1)
    assert s["accounted"] and s["clips_kept"] == 2 and s["candidate_clips"] == 3
    assert pq.read_table(next((tmp_path / "manifest").glob("part-*"))).column("provenance")[0].as_py().startswith("{")


def test_drop_unfinished_rewrites_only_their_rows(tmp_path):
    out = str(tmp_path)
    write_batch(out, from_rows([_clip("a", 0, 1), _clip("c", 0, 3)]))
    write_batch(out, from_rows([_clip("c", 10, 3)]))
    assert drop_unfinished(out, {"c"}) == 2
    parts = list((tmp_path / "manifest").glob("part-*"))
    assert len(parts) == 1 and pq.read_table(parts[0]).column("video_id").to_pylist() == ["a"]
    assert source_progress(out) == ({"a"}, set())


def test_summary_flags_lost_inputs(tmp_path):
    write_batch(str(tmp_path), from_rows([_clip("a", 0, 1)]))
    assert not build_summary(str(tmp_path), n_inputs=2)["accounted"]


def test_rows_written_twice_are_removed(tmp_path):
    """A write task re-run after a node loss writes the same rows into a new part."""
    out = str(tmp_path)
    rows = [_clip("a", 0, 2), _clip("a", 10, 2), _video("b", "probe", error="probe: empty file")]
    write_batch(out, from_rows(rows))
    write_batch(out, from_rows(rows[1:] + [_clip("c", 0, 1)]))
    assert drop_duplicates(out) == 2
    ids = sorted(pq.read_table(str(tmp_path / "manifest")).column("clip_id").to_pylist())
    assert ids == ["a_0", "a_10", "c_0"]
    assert len(pq.read_table(str(tmp_path / "rejects"))) == 1
    assert drop_duplicates(out) == 0
    s = build_summary(out, n_inputs=3)
    assert s["accounted"] and s["clips_kept"] == 3


def test_listed_inputs_are_counted(tmp_path):
    """With a search source every listed video is an input: one listed but never written makes
    the summary unaccounted (before, inputs were the videos seen, so it was always accounted)."""
    from medgen_ray.curate.sink import count_listed, write_listing

    out = str(tmp_path)
    write_listing(out, from_rows([{"video_id": v} for v in ("a", "b", "request-0123")]))
    write_listing(out, from_rows([{"video_id": "a"}]))  # listed again by a rerun: one input
    assert count_listed(out) == 3
    write_batch(out, from_rows([_video("a", "probe", error="probe: empty file"),
                                _video("request-0123", "source", error="source: yt-dlp could not list x")]))
    s = build_summary(out, n_inputs=count_listed(out))
    assert s["inputs"] == 3 and s["videos_errored"] == 2 and not s["accounted"]  # b vanished
    write_batch(out, from_rows([_video("b", "metadata", reason="metadata: not medical")]))
    assert build_summary(out, n_inputs=count_listed(out))["accounted"]
