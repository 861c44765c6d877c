"""Prompt categories from the text classifier: softmax probe, zero-shot on the real MiniLM,
a probe fitted on a dataset's captions, and the CSV written for review."""

import csv

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medgen_ray.config import PromptClassifierConfig, load_config
from medgen_ray.models.linear_probe import fit_category_probe, fit_probe, load_category_probe

CLEAR = {
    "A 3D animated rendering of red blood cells flowing through an artery.": "medical animation",
    "An ultrasound scan of the liver showing a grey fan-shaped image.": "medical imaging",
    "A surgeon performs a laparoscopic cholecystectomy in the operating room.": "clinical practice",
    "A professor lectures medical students about the heart in front of a whiteboard.": "medical teaching",
    "A presenter explains to the general public how sleep affects health.": "medical popular science",
}


def test_category_probe_fits_saves_and_refuses_mismatches(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 4
    labels = [["b", "a", "c"][i % 3] for i in range(90)]
    feats = np.stack([centres[["b", "a", "c"].index(c)] + rng.normal(size=8) for c in labels])
    probe = fit_category_probe(feats, labels, "emb")
    assert probe.classes == ["a", "b", "c"]
    assert np.mean(np.array(probe.predict(feats)) == np.array(labels)) > 0.95
    p = probe.predict_proba(feats[:5])
    assert p.shape == (5, 3) and np.allclose(p.sum(1), 1)
    probe.save(str(tmp_path / "c.npz"))
    again = load_category_probe(str(tmp_path / "c.npz"), expect_embedder="emb")
    assert np.allclose(again.predict_proba(feats[:5]), p)
    with pytest.raises(ValueError, match="trained on 'emb'"):
        load_category_probe(str(tmp_path / "c.npz"), expect_embedder="other")
    fit_probe(feats, np.array([c == "a" for c in labels], float), "emb").save(str(tmp_path / "bin.npz"))
    with pytest.raises(ValueError, match="binary probe"):
        load_category_probe(str(tmp_path / "bin.npz"))
    with pytest.raises(ValueError, match="at least 2 categories"):
        fit_category_probe(feats[:4], ["a"] * 4, "emb")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_category_probe(str(tmp_path / "nowhere.npz"))


@pytest.fixture(scope="module")
def minilm():
    from medgen_ray.models.registry import load_model

    return load_model("minilm", kind="text")


def test_zero_shot_puts_clear_prompts_in_their_category(minilm):
    from medgen_ray.evaluate.categories import PromptCategorizer

    c = PromptCategorizer(minilm, descriptions=PromptClassifierConfig().descriptions)
    cats, p = c.classify(list(CLEAR))
    assert cats == list(CLEAR.values())
    assert ((p > 0) & (p <= 1)).all()


def test_caption_categories_match_the_captioner_taxonomy():
    from medgen_ray.curate.captions import CATEGORIES

    assert set(PromptClassifierConfig().descriptions) == set(CATEGORIES)


def _captioned(root, rows):
    (root / "manifest").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "manifest" / "part-0000.parquet")
    return root


def test_probe_fitted_on_dataset_captions_labels_prompts(tmp_path, minilm):
    from medgen_ray.evaluate.categories import assign_prompt_categories

    texts = {"knee": ["A physiotherapist bends a patient's knee on a treatment table.",
                      "Knee rehabilitation exercises with an elastic band.",
                      "A patient walks on a treadmill after knee surgery."],
             "dental": ["A dentist drills a molar while the patient reclines.",
                        "Close-up of teeth being cleaned with a scaler.",
                        "A dental x-ray of a wisdom tooth on a screen."]}
    ds = _captioned(tmp_path / "ds", [{"clip_id": f"{k}{i}", "caption_detailed": t, "category": k}
                                      for k, ts in texts.items() for i, t in enumerate(ts * 2)])
    cfg = PromptClassifierConfig(train_on=str(ds))
    rows = [{"prompt": "A dentist examines the teeth of a child.", "model": m} for m in ("a", "b")] + \
           [{"prompt": "Physical therapy for the knee joint.", "model": "a"}]
    out = assign_prompt_categories(rows, cfg, str(tmp_path / "eval"))
    assert [r["clip_category"] for r in out] == ["dental", "dental", "knee"]
    assert (tmp_path / "eval" / "prompt_categories.probe.npz").exists()
    with open(tmp_path / "eval" / "prompt_categories.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 2 and {r["clip_category"] for r in table} == {"dental", "knee"}


def test_bad_classifier_settings_are_named(tmp_path):
    from medgen_ray.config import ConfigError
    from medgen_ray.curate.classifiers import dataset_captions

    with pytest.raises(ConfigError, match="probe or train_on"):
        load_config(None, ["evaluate.prompt_classifier={probe: a.npz, train_on: ds}"])
    ds = _captioned(tmp_path / "nocap", [{"clip_id": "x"}])
    with pytest.raises(ValueError, match="caption_detailed"):
        dataset_captions(str(ds))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        dataset_captions(str(tmp_path / "nowhere"))
