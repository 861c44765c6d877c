"""Titles, descriptions and channels for generated videos, medical or not, with labels."""

from __future__ import annotations

import numpy as np

_MED_TOPICS = ["laparoscopic cholecystectomy", "knee arthroscopy", "cardiac ultrasound", "colonoscopy",
               "appendectomy", "thyroid ultrasound", "hernia repair", "bronchoscopy", "liver anatomy",
               "suturing technique", "upper GI endoscopy", "renal anatomy", "echocardiography basics"]
_MED_TITLES = ["{t}: step by step", "Live {t} with commentary", "{t} explained for residents",
               "How to perform {t}", "{t} | surgical technique", "Teaching case: {t}"]
_MED_DESC = ["In this video our surgical team demonstrates {t} in the operating room.",
             "A lecture for medical students covering {t}, with annotated anatomy.",
             "Clinical tutorial: indications, technique and complications of {t}.",
             "Recorded at the university hospital; the patient consented to filming of {t}."]
_MED_CHANNELS = ["Surgery Academy", "Clinical Skills Lab", "MedEd Channel", "Radiology Rounds"]

_OTHER_TOPICS = ["minecraft speedrun", "pasta carbonara", "budget travel in Lisbon", "guitar solo lesson",
                 "football highlights", "phone unboxing", "quarterly business review", "street food tour",
                 "drone landscape footage", "chess opening traps", "home workout routine", "car review"]
_OTHER_TITLES = ["{t} - you won't believe this", "My {t} (full video)", "Best {t} of the year",
                 "{t} | episode 12", "Trying {t} for the first time"]
_OTHER_DESC = ["Thanks for watching! Like and subscribe for more {t} content.",
               "Today we are doing {t}. Links to my gear below.",
               "Full {t} in one take, no cuts. Music by our friends.",
               "Weekly vlog: {t} with the whole crew."]
_OTHER_CHANNELS = ["GameZone", "Kitchen Stories", "Wanderlust", "TechUnboxed"]


def make_metadata(rng: np.random.Generator, medical: bool) -> tuple[str, str, str]:
    """(title, description, channel) of a generated medical or non-medical video."""
    topics, titles, descs, chans = (
        (_MED_TOPICS, _MED_TITLES, _MED_DESC, _MED_CHANNELS)
        if medical
        else (_OTHER_TOPICS, _OTHER_TITLES, _OTHER_DESC, _OTHER_CHANNELS)
    )
    topic = str(rng.choice(topics))
    title = str(rng.choice(titles)).format(t=topic)
    title = title[0].upper() + title[1:]
    return title, str(rng.choice(descs)).format(t=topic), str(rng.choice(chans))


def make_labeled_texts(n_per_class: int, seed: int) -> list[tuple[str, int]]:
    """(title + description, label) pairs for training the metadata classifier."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in (1, 0):
        for _ in range(n_per_class):
            title, desc, _ = make_metadata(rng, medical=bool(label))
            rows.append((f"{title}\n{desc}", label))
    rng.shuffle(rows)
    return rows
