"""Procedural scenes whose class is known: medical-looking and not.

Each scene precomputes a texture once and renders a frame per timestamp with cheap slicing
and a few OpenCV shapes, so a corpus of many minutes renders in seconds on one core.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MEDICAL_SCENES = ("endoscopy", "ultrasound", "anatomy")
OTHER_SCENES = ("game", "slide", "talking_head")
ALL_SCENES = MEDICAL_SCENES + OTHER_SCENES


def _smooth_noise(rng: np.random.Generator, h: int, w: int, blur: int) -> np.ndarray:
    small = rng.random((max(2, h // blur), max(2, w // blur)), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


class Scene:
    """A scene renders frames of (h, w) at time t seconds into the scene."""

    medical: bool = False

    def __init__(self, h: int, w: int, rng: np.random.Generator):
        self.h, self.w, self.rng = h, w, rng

    def render(self, t: float) -> np.ndarray:
        raise NotImplementedError


class Endoscopy(Scene):
    """Endoscopy-like frames: pink-red mucosa texture with a moving instrument."""

    medical = True

    def __init__(self, h, w, rng):
        super().__init__(h, w, rng)
        H, W = h + h // 2, w + w // 2
        n = _smooth_noise(rng, H, W, 24)
        fine = _smooth_noise(rng, H, W, 6)
        red = 150 + 90 * n
        tex = np.stack([40 + 60 * fine * n, 60 + 70 * n * fine, red], axis=-1)  # BGR-ish pink/red
        self.tex = np.clip(tex, 0, 255).astype(np.uint8)[..., ::-1].copy()  # to RGB
        yy, xx = np.mgrid[0:h, 0:w]
        r = min(h, w) * 0.55
        self.mask = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= r * r)[..., None]
        self.speed = rng.uniform(4, 10, size=2)
        self.tool_phase = rng.uniform(0, 2 * math.pi)

    def render(self, t):
        dy = int((self.h // 4) * (1 + math.sin(t * self.speed[0] / 10)))
        dx = int((self.w // 4) * (1 + math.cos(t * self.speed[1] / 10)))
        frame = self.tex[dy : dy + self.h, dx : dx + self.w].copy()
        a = self.tool_phase + 0.4 * math.sin(t)
        x0, y0 = int(self.w * 0.95), int(self.h * 0.95)
        x1 = int(self.w / 2 + 0.2 * self.w * math.cos(a))
        y1 = int(self.h / 2 + 0.2 * self.h * math.sin(a))
        cv2.line(frame, (x0, y0), (x1, y1), (170, 175, 180), max(4, self.w // 40))
        cv2.circle(frame, (x1, y1), max(3, self.w // 60), (210, 210, 215), -1)
        return np.where(self.mask, frame, 8).astype(np.uint8)


class Ultrasound(Scene):
    """Ultrasound-like frames: a speckled grey fan on black."""

    medical = True

    def __init__(self, h, w, rng):
        super().__init__(h, w, rng)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        apex_y, apex_x = -0.1 * h, w / 2
        ang = np.arctan2(xx - apex_x, yy - apex_y)
        rad = np.hypot(xx - apex_x, yy - apex_y)
        self.cone = (np.abs(ang) < 0.6) & (rad > 0.2 * h) & (rad < 1.05 * h)
        self.base = _smooth_noise(rng, h, w, 16) * 0.6 + 0.2
        self.lesion = (rng.uniform(0.35, 0.65) * w, rng.uniform(0.4, 0.7) * h, rng.uniform(0.06, 0.1) * w)

    def render(self, t):
        speckle = self.rng.random((self.h // 2, self.w // 2), dtype=np.float32)
        speckle = cv2.resize(speckle, (self.w, self.h), interpolation=cv2.INTER_NEAREST)
        img = self.base * (0.55 + 0.45 * speckle)
        cx, cy, r = self.lesion
        cv2.circle(img, (int(cx + 5 * math.sin(t)), int(cy)), int(r), 0.08, -1)
        grey = np.where(self.cone, img * 255, 0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)


class Anatomy(Scene):
    """Anatomy-diagram frames: labelled organ shapes on a plain background."""

    medical = True

    def __init__(self, h, w, rng):
        super().__init__(h, w, rng)
        S = 2
        canvas = np.full((h * S, w * S, 3), (238, 232, 220), np.uint8)
        for _ in range(7):
            c = (int(rng.uniform(0.2, 0.8) * w * S), int(rng.uniform(0.2, 0.8) * h * S))
            ax = (int(rng.uniform(0.06, 0.18) * w * S), int(rng.uniform(0.05, 0.15) * h * S))
            col = tuple(int(v) for v in rng.choice([(190, 60, 70), (200, 120, 130), (140, 70, 50), (220, 160, 150)]))
            cv2.ellipse(canvas, c, ax, float(rng.uniform(0, 180)), 0, 360, col, -1)
            cv2.ellipse(canvas, c, ax, 0, 0, 360, (80, 30, 30), 3)
        for _ in range(6):
            p0 = (int(rng.uniform(0, w * S)), int(rng.uniform(0, h * S)))
            p1 = (int(rng.uniform(0, w * S)), int(rng.uniform(0, h * S)))
            cv2.line(canvas, p0, p1, (60, 60, 150), 4)
        self.canvas = canvas

    def render(self, t):
        z = 1.0 + 0.15 * (1 + math.sin(t / 3))
        ch, cw = int(self.canvas.shape[0] / z / 1.2), int(self.canvas.shape[1] / z / 1.2)
        y0 = (self.canvas.shape[0] - ch) // 2
        x0 = (self.canvas.shape[1] - cw) // 2
        return cv2.resize(self.canvas[y0 : y0 + ch, x0 : x0 + cw], (self.w, self.h), interpolation=cv2.INTER_AREA)


class Game(Scene):
    """Gameplay-like frames: saturated tiles and sprites."""

    def __init__(self, h, w, rng):
        super().__init__(h, w, rng)
        tile = max(8, w // 16)
        gh, gw = 3 * h // tile + 2, 3 * w // tile + 2
        palette = np.array([(40, 200, 60), (30, 90, 230), (250, 220, 40), (120, 70, 30), (90, 220, 250)], np.uint8)
        grid = palette[rng.integers(0, len(palette), size=(gh, gw))]
        self.tex = np.kron(grid, np.ones((tile, tile, 1), np.uint8))
        self.v = rng.uniform(40, 90)

    def render(self, t):
        off = int(t * self.v) % (self.tex.shape[1] - self.w)
        frame = self.tex[: self.h, off : off + self.w].copy()
        x = int(self.w / 2 + self.w / 4 * math.sin(2 * t))
        cv2.rectangle(frame, (x, self.h // 2), (x + self.w // 20, self.h // 2 + self.h // 12), (255, 40, 200), -1)
        return frame


class Slide(Scene):
    """Presentation-slide frames: text lines on a coloured background."""

    def __init__(self, h, w, rng):
        super().__init__(h, w, rng)
        bg = tuple(int(v) for v in rng.choice([(20, 40, 110), (30, 30, 30), (60, 20, 70)]))
        fg = (255, 255, 255) if sum(bg) < 400 else (20, 20, 20)
        img = np.full((h, w, 3), bg, np.uint8)
        words = ["Quarterly", "results", "agenda", "growth", "team", "roadmap", "budget", "market", "plan"]
        for i in range(6):
            line = " ".join(rng.choice(words, size=4))
            cv2.putText(img, line, (w // 12, h // 6 + i * h // 8), cv2.FONT_HERSHEY_SIMPLEX, w / 900, fg, 2)
        self.img = img

    def render(self, t):
        return self.img.copy()


class TalkingHead(Scene):
    """Talking-head frames: a face blob in front of a wall."""

    def __init__(self, h, w, rng):
        super().__init__(h, w, rng)
        wall = np.array(rng.choice([(120, 140, 160), (170, 150, 120), (90, 110, 90)]), np.float32)
        grad = np.linspace(0.8, 1.1, w, dtype=np.float32)[None, :, None]
        self.bg = np.clip(wall * grad * np.ones((h, 1, 1), np.float32), 0, 255).astype(np.uint8)
        self.skin = tuple(int(v) for v in rng.choice([(225, 190, 160), (160, 110, 80), (240, 210, 190)]))

    def render(self, t):
        f = self.bg.copy()
        cx = int(self.w / 2 + self.w * 0.02 * math.sin(1.5 * t))
        cv2.ellipse(f, (cx, int(self.h * 1.05)), (self.w // 4, self.h // 3), 0, 0, 360, (50, 50, 70), -1)
        cv2.ellipse(f, (cx, int(self.h * 0.45)), (self.w // 9, self.h // 5), 0, 0, 360, self.skin, -1)
        mouth = 2 + int(4 * abs(math.sin(6 * t)))
        cv2.ellipse(f, (cx, int(self.h * 0.55)), (self.w // 40, mouth), 0, 0, 360, (90, 30, 30), -1)
        return f


SCENES: dict[str, type[Scene]] = {
    "endoscopy": Endoscopy,
    "ultrasound": Ultrasound,
    "anatomy": Anatomy,
    "game": Game,
    "slide": Slide,
    "talking_head": TalkingHead,
}


def make_scene(name: str, h: int, w: int, rng: np.random.Generator) -> Scene:
    """A scene renderer by name; KeyError listing the choices."""
    if name not in SCENES:
        raise KeyError(f"unknown scene {name!r}; choices: {', '.join(SCENES)}")
    return SCENES[name](h, w, rng)


def burn_text(frame: np.ndarray, words: list[str], per_line: int = 8) -> np.ndarray:
    """Subtitle-style burned-in text on the lower part of the frame, `per_line` words a line."""
    h, w = frame.shape[:2]
    lines = [" ".join(words[i : i + per_line]) for i in range(0, len(words), per_line)]
    scale = max(0.4, w / 1000)
    step = int(34 * scale) + 6
    y0 = h - 12 - step * (len(lines) - 1)
    for i, line in enumerate(lines):
        y = y0 + i * step
        cv2.putText(frame, line, (w // 24, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 5)
        cv2.putText(frame, line, (w // 24, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2)
    return frame
