"""The doctors' study without Label Studio: a blinded study from an evaluation, answers as the
CSV groups without Label Studio send, Fig. 6 and kappa against values worked out by hand
(tests/study_data.py), and every kind of bad input."""

import csv
import json

import pytest

from medgen_ray.evaluate.study import ASPECTS, create_study, read_study
from medgen_ray.evaluate.study_results import study_results, write_study_results
from tests import study_data as sd


@pytest.fixture
def study(tmp_path):
    evaluation = sd.make_evaluation(tmp_path / "eval")
    folder = tmp_path / "study"
    info = create_study(evaluation, str(folder), "MedGen", sd.RATERS, seed=3, media="local-files",
                        document_root=str(tmp_path))
    return {"eval": evaluation, "folder": str(folder), "info": info, "root": tmp_path}


def _csv(path, study_id, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["study", "rater", "task_id", "aspect", "choice"])
        w.writerows([study_id, *r] for r in rows)
    return str(path)


def test_the_study_is_blinded_and_complete(study):
    info, folder = study["info"], study["folder"]
    s, key = read_study(folder)
    assert info["pair_tasks"] == 4 and info["distortion_tasks"] == 12  # B's errored video left out
    assert s["skipped_prompts"] == [{"prompt_index": 9, "reason": "no video of the focus model"}]
    for k in key["pairs"].values():
        assert "MedGen" in (k["left"], k["right"]) and k["left"] != k["right"]
    assert {k["left"] == "MedGen" for k in key["pairs"].values()} == {True, False}  # both sides drawn
    orders = []
    for r in sd.RATERS:
        tasks = json.loads(open(f"{folder}/label_studio/{r}.pairs.json").read())
        text = json.dumps(tasks)
        assert not any(m in text for m in sd.MODELS)  # no model name reaches a rater
        assert all(t["data"]["rater"] == r and t["data"]["study"] == s["study_id"] for t in tasks)
        url = tasks[0]["data"]["video_left"]
        assert url.startswith("/data/local-files/?d=study/media/") and url.endswith(".mp4")
        orders.append([t["data"]["task_id"] for t in tasks])
        dist = json.loads(open(f"{folder}/label_studio/{r}.distortion.json").read())
        orders.append([t["data"]["task_id"] for t in dist])
    assert len({tuple(o) for o in orders[::2]}) > 1  # each rater's own order
    assert "both lose" in open(f"{folder}/label_studio/pairs.xml").read()
    with pytest.raises(FileExistsError):
        create_study(study["eval"], folder, "MedGen", sd.RATERS, document_root=str(study["root"]))


def test_results_equal_the_hand_worked_values(study):
    s, key = read_study(study["folder"])
    path = _csv(study["root"] / "answers.csv", s["study_id"], sd.answers(key))
    result = study_results(study["folder"], [path])
    kappa = {(k["task"], k["raters"]): k["kappa"] for k in result["kappa"]}
    for name, value in sd.KAPPA.items():
        assert kappa[name] == pytest.approx(value, abs=1e-12), name
    got = {(r["other"], r["aspect"]): {v: r[v] for v in ("win", "both_lose", "loss", "split")} for r in result["fig6"]}
    assert got == sd.expected_fig6(key)
    assert result["warping_error"] == sd.WARPING
    assert result["gaps"] == []
    out = write_study_results(study["folder"], result)
    assert open(f"{out}/ratings.csv").readline().strip() == "video_id,rater,rating"
    assert "kappa" in open(f"{out}/study_report.md").read()


def test_gaps_are_counted_and_bad_files_named(study):
    s, key = read_study(study["folder"])
    rows = sd.answers(key)
    first = next(iter(key["pairs"]))
    skipped = [r for r in rows if not (r[0] == "r2" and r[1] == first)]
    twice = skipped + [r for r in rows if r[0] == "r3" and r[1] == "video-0001"]
    result = study_results(study["folder"], [_csv(study["root"] / "a.csv", s["study_id"], twice)])
    gaps = {(g["rater"], g["task_id"], g["gap"]) for g in result["gaps"]}
    assert gaps == {("r2", first, "not in any file"), ("r3", "video-0001", "answered twice")}
    assert sum(r["tasks"] for r in result["fig6"]) == 4 * len(ASPECTS)  # two raters still decide
    for bad, message in (((s["study_id"] + "x", "r1", first, "text_alignment", "left"), "not of this study"),
                         ((s["study_id"], "r9", first, "text_alignment", "left"), "unknown rater 'r9'"),
                         ((s["study_id"], "r1", "video-0999", "distortion", "no"), "not in the study's key"),
                         ((s["study_id"], "r1", first, "distortion", "no"), "has no aspect"),
                         ((s["study_id"], "r1", first, "text_alignment", "middle"), "is not one of")):
        path = study["root"] / "bad.csv"
        with open(path, "w") as fh:
            fh.write("study,rater,task_id,aspect,choice\n" + ",".join(bad) + "\n")
        with pytest.raises(ValueError, match=message) as err:
            study_results(study["folder"], [str(path)])
        assert "bad.csv" in str(err.value)


def test_the_evaluation_gains_the_warping_error_and_total(study):
    import pyarrow.parquet as pq

    from medgen_ray.evaluate.job import retotal_with_study

    s, key = read_study(study["folder"])
    result = study_results(study["folder"], [_csv(study["root"] / "answers.csv", s["study_id"], sd.answers(key))])
    out = write_study_results(study["folder"], result)
    page = retotal_with_study(study["eval"], f"{out}/ratings.csv", result)
    rows = {r["model"]: r for r in pq.read_table(f"{study['eval']}/per_model.parquet").to_pylist()}
    assert {m: rows[m]["warping_error"] for m in sd.MODELS} == sd.WARPING
    html = open(page).read()
    assert 'id="fig6"' in html and 'id="kappa"' in html


def test_the_commands(tmp_path, capsys):
    from medgen_ray.cli import main

    evaluation = sd.make_evaluation(tmp_path / "eval")
    folder = tmp_path / "study"
    assert main(["study", "create", "--eval", evaluation, "--out", str(folder), "--model", "MedGen",
                 "--document-root", str(tmp_path)]) == 0
    assert "4 pair tasks, 12 distortion tasks for 3 raters" in capsys.readouterr().out
    s, key = read_study(str(folder))
    answers = _csv(tmp_path / "answers.csv", s["study_id"], sd.answers(key))
    assert main(["study", "results", "--study", str(folder), answers, "--eval", evaluation]) == 0
    out = capsys.readouterr().out
    assert "kappa pairs r1-r2 (cohen): 0.875 on 12 items" in out and "warping error A: 100.00" in out
    assert main(["study", "results", "--study", str(folder), str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("medgen: error:")
