"""The `medgen` command line on small real inputs."""

import csv
import json

import numpy as np

from medgen_ray.cli import main
from medgen_ray.models.linear_probe import load_probe
from medgen_ray.models.registry import load_model
from medgen_ray.samples.texts import make_labeled_texts


def test_train_text_classifier_from_csv(tmp_path, capsys):
    path = tmp_path / "texts.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["title", "description", "label"])
        for text, label in make_labeled_texts(20, seed=5):
            title, desc = text.split("\n", 1)
            w.writerow([title, desc, "medical" if label else "other"])
    out = tmp_path / "m.npz"
    assert main(["classifier", "train-text", "--csv", str(path), "--embedder", "minilm", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["test_accuracy"] >= 0.9
    probe = load_probe(str(out), expect_embedder="minilm")
    emb = load_model("minilm", kind="text").embed(["Live appendectomy for surgical residents", "Minecraft speedrun"])
    p = probe.predict_proba(emb.astype(np.float64))
    assert p[0] > 0.5 > p[1]


def test_train_text_rejects_bad_labels(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\n" + "".join(f"t{i},maybe\n" for i in range(5)))
    assert main(["classifier", "train-text", "--csv", str(path), "--out", str(tmp_path / "x.npz")]) == 2
    assert "row 2: label 'maybe'" in capsys.readouterr().err


def test_weights_pull_and_list(tmp_path, capsys):
    assert main(["weights", "pull", "clip/tiny", "minilm/tiny", "--dest", str(tmp_path)]) == 0
    assert (tmp_path / "clip__tiny" / "weights.pt").exists() and (tmp_path / "minilm__tiny" / "weights.pt").exists()
    assert main(["weights", "list"]) == 0
    assert "clip/vit-b-32" in capsys.readouterr().out


def test_unknown_model_name_exits_2(tmp_path, capsys):
    assert main(["weights", "pull", "clip/huge", "--dest", str(tmp_path)]) == 2
    assert "choices:" in capsys.readouterr().err


def test_train_categories_from_csv(tmp_path, capsys):
    from medgen_ray.models.linear_probe import load_category_probe

    path = tmp_path / "cats.csv"
    rows = [("A surgeon sutures the abdomen in the operating room.", "clinical practice"),
            ("Laparoscopic instruments grasp the gallbladder during surgery.", "clinical practice"),
            ("A nurse draws blood from a patient's arm in the clinic.", "clinical practice"),
            ("An animated 3D model of a beating heart.", "medical animation"),
            ("Cartoon cells divide in a computer animation.", "medical animation"),
            ("A rendered animation of neurons firing.", "medical animation")]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "category"])
        w.writerows(rows * 2)
    out = tmp_path / "c.npz"
    assert main(["classifier", "train-categories", "--csv", str(path), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["categories"] == ["clinical practice", "medical animation"]
    probe = load_category_probe(str(out), expect_embedder="minilm")
    emb = load_model("minilm", kind="text").embed(["An animation of bacteria swimming.", "Surgeons operate on a knee."])
    assert probe.predict(emb) == ["medical animation", "clinical practice"]
    assert main(["classifier", "train-categories", "--out", str(out)]) == 2
