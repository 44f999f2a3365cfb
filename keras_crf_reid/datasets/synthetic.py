"""Synthetic two-camera pedestrian sequences in the PRID-2011 folder layout.

Each identity is a cartoon walker with a fixed appearance (clothing colours from a small shared
palette, a clothing texture, body shape, hair, bag, shoes) and a fixed gait (stride frequency,
leg and arm swing). Colours come from so few palette entries that many identities wear the same
colours in a different arrangement, and both cameras apply strong, partly random illumination
and colour changes, so global colour statistics are a weak cue: recognising a person needs the
spatial layout of colours, textures, shape and motion, which is what the CRF network learns.

The cameras also differ in background, scale, vertical placement, walking direction (cam_b is
mirrored), blur, noise and occlusion. Everything is drawn with NumPy and OpenCV from generators
seeded by (seed, person, stream), so a dataset is byte-identical for a given set of parameters.

Layout written: out_root/cam_{a,b}/person_XXXX/NNNN.png (1-based, 4 digits) and
out_root/manifest.json holding the generation parameters.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import os
import shutil
import sys
import uuid

import cv2
import numpy as np

from keras_crf_reid.datasets.base import DatasetError
from keras_crf_reid.frames import FRAME_HEIGHT, FRAME_WIDTH

GENERATOR_NAME = "keras_crf_reid.datasets.synthetic"
# Bumped whenever the drawing changes, so an old dataset is not silently taken for a new one.
GENERATOR_VERSION = 1
MANIFEST = "manifest.json"
CAMERAS = ("cam_a", "cam_b")

# Frames are drawn at SS times the output size and shrunk with area averaging (anti-aliasing).
_SS = 2
_H, _W = FRAME_HEIGHT * _SS, FRAME_WIDTH * _SS

# The small clothing palette shared by all identities (RGB).
PALETTE = np.array([
    (28, 28, 32),     # black
    (228, 226, 218),  # off-white
    (120, 122, 126),  # grey
    (168, 34, 38),    # red
    (34, 50, 110),    # navy
    (196, 170, 120),  # beige
], np.float32)
_SKIN = np.array([(236, 196, 164), (210, 160, 120), (160, 110, 75), (100, 66, 44)], np.float32)
_HAIR = np.array([(20, 16, 14), (80, 50, 28), (200, 165, 95), (150, 150, 150)], np.float32)
_SHOES = np.array([(22, 22, 22), (235, 235, 235), (95, 60, 35)], np.float32)
TEXTURES = ("plain", "hstripes", "vstripes", "checks", "logo")
_STREAM_IDENTITY = 0


@dataclasses.dataclass(frozen=True)
class Identity:
    """Everything that makes one person recognisable; identical in both cameras."""

    shirt: np.ndarray
    trousers: np.ndarray
    accent: np.ndarray
    texture: str
    period: float            # stripe / check period, in units of body height
    logo: tuple[float, float, float, float]   # centre x, centre y, width, height (torso units)
    long_sleeves: bool
    shorts: bool
    skin: np.ndarray
    hair: np.ndarray
    hair_length: float       # 0 = short cap, up to ~0.3 body heights down the back
    shoes: np.ndarray
    bag: str                 # "none", "backpack" or "shoulder"
    bag_colour: np.ndarray
    bag_front: bool          # shoulder bag hangs at the front (else the back) hip
    height: float            # fraction of the camera's nominal body height
    width: float             # torso width multiplier
    head: float              # head size multiplier
    stride_freq: float       # gait cycles per frame
    leg_swing: float         # thigh swing amplitude, radians
    arm_swing: float         # arm swing amplitude, radians
    knee_flex: float         # knee bend during the swing phase, radians
    bounce: float            # vertical bob, fraction of body height


def _identity(seed: int, pid: int) -> Identity:
    rng = np.random.default_rng([seed, pid, _STREAM_IDENTITY])
    n = len(PALETTE)
    shirt_i, trousers_i = rng.choice(n, size=2, replace=False)
    accent_i = rng.choice([i for i in range(n) if i != shirt_i])
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    return Identity(
        shirt=PALETTE[shirt_i], trousers=PALETTE[trousers_i], accent=PALETTE[accent_i],
        texture=texture,
        period=float(rng.uniform(0.035, 0.08)),
        logo=(float(rng.uniform(-0.2, 0.2)), float(rng.uniform(0.25, 0.5)),
              float(rng.uniform(0.35, 0.7)), float(rng.uniform(0.15, 0.3))),
        long_sleeves=bool(rng.random() < 0.5),
        shorts=bool(rng.random() < 0.25),
        skin=_SKIN[rng.integers(len(_SKIN))],
        hair=_HAIR[rng.integers(len(_HAIR))],
        hair_length=float(rng.choice([0.0, 0.0, 0.12, 0.28])),
        shoes=_SHOES[rng.integers(len(_SHOES))],
        bag=str(rng.choice(["none", "none", "backpack", "shoulder"])),
        bag_colour=PALETTE[rng.integers(n)],
        bag_front=bool(rng.random() < 0.5),
        height=float(rng.uniform(0.88, 1.0)),
        width=float(rng.uniform(0.85, 1.2)),
        head=float(rng.uniform(0.85, 1.2)),
        stride_freq=float(rng.uniform(0.05, 0.11)),
        leg_swing=float(rng.uniform(0.3, 0.5)),
        arm_swing=float(rng.uniform(0.15, 0.6)),
        knee_flex=float(rng.uniform(0.3, 0.8)),
        bounce=float(rng.uniform(0.005, 0.02)),
    )


# Per-sequence illumination jitter around the camera's nominal response (log-normal gains,
# normal offsets / log-gamma / gradient): what makes global colour statistics unreliable.
_JITTER_GAIN = float(os.environ.get("SYN_G", 0.07))
_JITTER_BRIGHTNESS = float(os.environ.get("SYN_B", 0.12))
_JITTER_OFFSET = float(os.environ.get("SYN_O", 0.02))
_JITTER_GAMMA = float(os.environ.get("SYN_GM", 0.08))
_JITTER_GRADIENT = float(os.environ.get("SYN_GR", 0.1))
_BG_JITTER = float(os.environ.get("SYN_BG", 0.08))


@dataclasses.dataclass(frozen=True)
class _Camera:
    """Nominal properties of one camera; each sequence jitters them."""

    gain: tuple[float, float, float]
    offset: tuple[float, float, float]
    gamma: float
    body_frac: tuple[float, float]   # body height / frame height range
    foot_frac: tuple[float, float]   # feet y / frame height range
    blur: tuple[float, float]        # Gaussian sigma range at output resolution (0 = none)
    noise: float
    mirrored: bool


_CAMS = {
    "cam_a": _Camera(gain=(1.12, 1.0, 0.8), offset=(0.03, 0.01, -0.03), gamma=0.85,
                     body_frac=(0.84, 0.95), foot_frac=(0.95, 1.0), blur=(0.0, 0.0),
                     noise=0.015, mirrored=False),
    "cam_b": _Camera(gain=(0.8, 0.95, 1.15), offset=(-0.02, 0.03, 0.07), gamma=1.2,
                     body_frac=(0.76, 0.88), foot_frac=(0.9, 0.98), blur=(0.7, 1.3),
                     noise=0.03, mirrored=True),
}


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth random field in [0, 1] of shape (h, w) with features about `cell` pixels wide."""
    small = rng.random((max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


_PANORAMA_WIDTH = 2048


@functools.lru_cache(maxsize=4)
def _scene(seed: int, cam: str) -> np.ndarray:
    """The fixed backdrop a camera looks at: a wide panorama (H, width, 3) float32 RGB.

    Each sequence sees a different horizontal stretch of it, scrolling as the person walks.
    """
    rng = np.random.default_rng([seed, 0, 1 + CAMERAS.index(cam)])
    h, width = _H, _PANORAMA_WIDTH
    yy, xx = np.mgrid[0:h, 0:width].astype(np.float32)
    horizon = int(h * rng.uniform(0.58, 0.66))
    bg = np.empty((h, width, 3), np.float32)
    if cam == "cam_a":
        # brick wall over paving stones
        wall = np.array((150, 80, 60), np.float32) * rng.uniform(0.9, 1.1, 3)
        bh = rng.uniform(10, 18)
        bw = bh * rng.uniform(2.0, 3.0)
        row = np.floor(yy / bh)
        mortar = ((yy % bh) < 2) | (((xx + (row % 2) * bw / 2) % bw) < 2)
        tone = _smooth_noise(rng, h, width, 24)[..., None] * 0.4 + 0.8
        bg[:] = np.where(mortar[..., None], np.float32(200.0), wall * tone)
        pave = np.array((140, 138, 130), np.float32) * rng.uniform(0.9, 1.1, 3)
        tile = rng.uniform(14, 26)
        joints = ((xx % tile) < 2) | ((yy % (tile * 0.6)) < 2)
        ground = pave * (0.85 + 0.3 * _smooth_noise(rng, h, width, 8)[..., None])
        ground = np.where(joints[..., None], ground * 0.7, ground)
    else:
        # hedge and trees over asphalt with a kerb line
        leaf = np.array((60, 110, 55), np.float32) * rng.uniform(0.9, 1.1, 3)
        tone = _smooth_noise(rng, h, width, 10) * 0.6 + 0.5
        blobs = _smooth_noise(rng, h, width, 30)
        bg[:] = leaf * tone[..., None] * (0.6 + 0.6 * blobs[..., None])
        for _ in range(width // 150):
            x0 = int(rng.uniform(0, width))
            tw = int(rng.uniform(6, 14))
            bg[:horizon, x0:x0 + tw] = np.array((90, 70, 50), np.float32) * rng.uniform(0.7, 1.2)
        asphalt = np.array((85, 85, 90), np.float32) * rng.uniform(0.9, 1.1, 3)
        ground = asphalt * (0.8 + 0.4 * _smooth_noise(rng, h, width, 4)[..., None])
        kerb = (yy > horizon) & (yy < horizon + rng.uniform(4, 9))
        ground = np.where(kerb[..., None], np.float32(190.0), ground)
    bg = np.where((yy >= horizon)[..., None], ground, bg)
    # palette-coloured signs and posters, so the backdrop shares colours with the clothing
    for _ in range(int(width * float(os.environ.get("SYN_POST", 0.004)))):
        pw, ph = int(rng.uniform(12, 40)), int(rng.uniform(12, 50))
        x0, y0 = int(rng.uniform(0, width - pw)), int(rng.uniform(0, max(1, horizon - ph)))
        bg[y0:y0 + ph, x0:x0 + pw] = PALETTE[rng.integers(len(PALETTE))]
    bg.setflags(write=False)
    return bg


@dataclasses.dataclass(frozen=True)
class _Sequence:
    """Per-tracklet viewing conditions drawn from the camera's generator."""

    length: int
    phase: float
    freq: float
    body_h: float          # body height in supersampled pixels
    foot_y: float
    x0: float
    drift: float           # person's horizontal drift per frame (supersampled pixels)
    scroll: float          # background scroll per frame (supersampled pixels)
    bg_start: int          # first panorama column seen
    bg_tint: np.ndarray    # per-channel multiplier of the backdrop (local lighting)
    gain: np.ndarray
    offset: np.ndarray
    gamma: float
    gradient: np.ndarray   # illumination slope (vertical, horizontal)
    blur: float
    noise: float
    mirrored: bool
    pole: tuple[float, float, np.ndarray] | None          # x at frame 0, width, colour
    box: tuple[int, int, float, float, np.ndarray] | None  # first, last frame, top y, x, colour


def _sequence(rng: np.random.Generator, ident: Identity, cam: str, min_len: int,
              max_len: int) -> _Sequence:
    c = _CAMS[cam]
    length = int(rng.integers(min_len, max_len + 1))
    body_h = _H * rng.uniform(*c.body_frac) * ident.height
    foot_y = _H * rng.uniform(*c.foot_frac)
    foot_y = max(foot_y, body_h * 1.04)
    freq = ident.stride_freq * rng.uniform(0.93, 1.07)
    blur = rng.uniform(*c.blur) if c.blur[1] > 0 else 0.0
    pole = None
    if rng.random() < 0.35 * float(os.environ.get("SYN_OCC", 1)):
        pole = (float(rng.uniform(-_W * 0.5, _W * 1.5)), float(rng.uniform(6, 14)),
                np.array((70, 70, 75), np.float32) * rng.uniform(0.6, 1.6))
    box = None
    if rng.random() < 0.25 * float(os.environ.get("SYN_OCC", 1)):
        first = int(rng.integers(0, length))
        last = int(min(length - 1, first + rng.integers(length // 3, length + 1)))
        box = (first, last, float(foot_y - body_h * rng.uniform(0.15, 0.45)),
               float(rng.uniform(0.0, _W * 0.5)),
               PALETTE[rng.integers(len(PALETTE))] * rng.uniform(0.7, 1.1))
    return _Sequence(
        length=length, phase=float(rng.uniform(0, 2 * np.pi)), freq=freq,
        body_h=body_h, foot_y=foot_y,
        x0=_W / 2 + rng.uniform(-0.08, 0.08) * _W, drift=float(rng.uniform(-0.5, 0.5)),
        scroll=float(body_h * freq * rng.uniform(0.6, 1.0)),
        bg_start=int(rng.integers(_PANORAMA_WIDTH)),
        bg_tint=rng.uniform(1 - _BG_JITTER, 1 + _BG_JITTER, 3).astype(np.float32),
        gain=(1 + float(os.environ.get("SYN_CAM", 1)) * (np.asarray(c.gain, np.float32) - 1))
        * np.exp(rng.normal(0, _JITTER_GAIN, 3)).astype(np.float32)
        * np.float32(np.exp(rng.normal(0, _JITTER_BRIGHTNESS))),
        offset=float(os.environ.get("SYN_CAM", 1)) * np.asarray(c.offset, np.float32)
        + rng.normal(0, _JITTER_OFFSET, 3).astype(np.float32),
        gamma=float(c.gamma ** float(os.environ.get("SYN_CAM", 1)) * np.exp(rng.normal(0, _JITTER_GAMMA))),
        gradient=rng.normal(0, _JITTER_GRADIENT, 2).astype(np.float32),
        blur=float(blur) * float(os.environ.get("SYN_BLUR", 1)), noise=c.noise * float(os.environ.get("SYN_NOISE", 1)), mirrored=c.mirrored, pole=pole, box=box,
    )


def _limb(mask: np.ndarray, p0, p1, thickness: float) -> None:
    pts = np.round(np.array([p0, p1])).astype(np.int32)
    cv2.line(mask, tuple(pts[0]), tuple(pts[1]), 255, max(1, int(round(thickness))), cv2.LINE_8)


def _paint(img: np.ndarray, mask: np.ndarray, colour) -> None:
    """Fills the pixels of a uint8 mask with a colour (3,) or a colour image (H, W, 3)."""
    m = mask > 0
    img[m] = colour[m] if np.ndim(colour) == 3 else colour


def _leg_points(hip, body_h: float, swing: float, flex: float):
    thigh, shin = 0.245 * body_h, 0.235 * body_h
    knee = (hip[0] + thigh * np.sin(swing), hip[1] + thigh * np.cos(swing))
    a = swing - flex
    ankle = (knee[0] + shin * np.sin(a), knee[1] + shin * np.cos(a))
    return knee, ankle


def _draw_person(img: np.ndarray, ident: Identity, seq: _Sequence, t: int) -> None:
    """Draws the walker at frame t onto the supersampled canvas, walking towards +x."""
    bh = seq.body_h
    phi = seq.phase + 2 * np.pi * seq.freq * t
    cx = seq.x0 + seq.drift * t
    top = seq.foot_y - bh - ident.bounce * bh * abs(np.sin(phi))
    hip = (cx, top + 0.52 * bh)
    shoulder_y = top + 0.18 * bh
    torso_w = 0.25 * bh * ident.width
    limb_w = 0.09 * bh * (0.8 + 0.2 * ident.width)
    arm_w = 0.068 * bh * (0.8 + 0.2 * ident.width)
    head_r = 0.07 * bh * ident.head
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def leg(side_phase: float, shade: float) -> None:
        swing = ident.leg_swing * np.sin(side_phase)
        flex = ident.knee_flex * max(0.0, np.cos(side_phase))
        knee, ankle = _leg_points(hip, bh, swing, flex)
        m = np.zeros((h, w), np.uint8)
        _limb(m, hip, knee, limb_w)
        _limb(m, knee, ankle, limb_w * 0.9)
        _paint(img, m, ident.skin * shade)
        m[:] = 0
        if ident.shorts:
            mid = (hip[0] + 0.6 * (knee[0] - hip[0]), hip[1] + 0.6 * (knee[1] - hip[1]))
            _limb(m, hip, mid, limb_w * 1.15)
        else:
            _limb(m, hip, knee, limb_w)
            _limb(m, knee, ankle, limb_w * 0.9)
        _paint(img, m, ident.trousers * shade)
        m[:] = 0
        toe = (ankle[0] + 0.075 * bh, ankle[1] + 0.01 * bh)
        _limb(m, ankle, toe, limb_w * 0.7)
        _paint(img, m, ident.shoes * shade)

    def arm(side_phase: float, shade: float, dx: float) -> None:
        a = -ident.arm_swing * np.sin(side_phase)
        sh = (cx + dx, shoulder_y + 0.02 * bh)
        upper, fore = 0.17 * bh, 0.16 * bh
        elbow = (sh[0] + upper * np.sin(a), sh[1] + upper * np.cos(a))
        a2 = a + 0.25 + 0.3 * max(0.0, a)
        hand = (elbow[0] + fore * np.sin(a2), elbow[1] + fore * np.cos(a2))
        m = np.zeros((h, w), np.uint8)
        _limb(m, sh, elbow, arm_w)
        if ident.long_sleeves:
            _limb(m, elbow, hand, arm_w * 0.9)
        _paint(img, m, ident.shirt * shade)
        m[:] = 0
        if not ident.long_sleeves:
            _limb(m, elbow, hand, arm_w * 0.8)
        cv2.circle(m, tuple(np.round(hand).astype(int)), max(1, int(arm_w * 0.55)), 255, -1)
        _paint(img, m, ident.skin * shade)

    def torso() -> None:
        lean = 0.03 * bh
        pts = np.array([(cx - torso_w / 2 + lean, shoulder_y), (cx + torso_w / 2 + lean, shoulder_y),
                        (cx + torso_w * 0.45, hip[1] + 0.04 * bh),
                        (cx - torso_w * 0.45, hip[1] + 0.04 * bh)])
        m = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(m, np.round(pts).astype(np.int32), 255)
        u = (xx - cx) / bh
        v = (yy - shoulder_y) / bh
        p = ident.period
        if ident.texture == "hstripes":
            sel = (np.floor(v / p) % 2) == 1
        elif ident.texture == "vstripes":
            sel = (np.floor(u / p) % 2) == 1
        elif ident.texture == "checks":
            sel = ((np.floor(u / p) + np.floor(v / p)) % 2) == 1
        elif ident.texture == "logo":
            lx, ly, lw, lh = ident.logo
            tu = u * bh / torso_w
            tv = (yy - shoulder_y) / (hip[1] - shoulder_y)
            sel = (np.abs(tu - lx) < lw / 2) & (np.abs(tv - ly) < lh / 2)
        else:
            sel = np.zeros((h, w), bool)
        tex = np.where(sel[..., None], ident.accent, ident.shirt).astype(np.float32)
        _paint(img, m, tex)
        # trouser waistband over the hips
        m[:] = 0
        cv2.rectangle(m, (int(cx - torso_w * 0.45), int(hip[1] - 0.03 * bh)),
                      (int(cx + torso_w * 0.45), int(hip[1] + 0.05 * bh)), 255, -1)
        _paint(img, m, ident.trousers)

    def head() -> None:
        hc = (cx + 0.04 * bh, top + head_r * 1.05)
        m = np.zeros((h, w), np.uint8)
        _limb(m, (cx + 0.02 * bh, hc[1]), (cx + 0.02 * bh, shoulder_y + 2), head_r * 0.7)
        cv2.ellipse(m, (int(hc[0]), int(hc[1])), (int(head_r * 0.9), int(head_r * 1.05)),
                    0, 0, 360, 255, -1)
        _paint(img, m, ident.skin)
        m[:] = 0
        cv2.ellipse(m, (int(hc[0] - head_r * 0.15), int(hc[1] - head_r * 0.15)),
                    (int(head_r * 0.95), int(head_r * 0.95)), 0, 150, 360, 255, -1)
        if ident.hair_length > 0:
            x_back = hc[0] - head_r * 0.95
            pts = np.array([(x_back, hc[1] - head_r * 0.3), (hc[0], hc[1] - head_r * 0.3),
                            (hc[0] - head_r * 0.3, top + ident.hair_length * bh + head_r),
                            (x_back - 0.01 * bh, top + ident.hair_length * bh + head_r)])
            cv2.fillConvexPoly(m, np.round(pts).astype(np.int32), 255)
        _paint(img, m, ident.hair)

    def bag(front_layer: bool) -> None:
        m = np.zeros((h, w), np.uint8)
        if ident.bag == "backpack" and front_layer:
            x1 = cx - torso_w * 0.35
            cv2.rectangle(m, (int(x1 - 0.12 * bh), int(shoulder_y + 0.02 * bh)),
                          (int(x1 + 0.02 * bh), int(shoulder_y + 0.22 * bh)), 255, -1)
        elif ident.bag == "shoulder" and front_layer:
            sx = cx + (0.1 if ident.bag_front else -0.1) * bh
            _limb(m, (cx - torso_w * 0.3, shoulder_y), (sx, hip[1] - 0.02 * bh), 0.02 * bh)
            cv2.rectangle(m, (int(sx - 0.06 * bh), int(hip[1] - 0.04 * bh)),
                          (int(sx + 0.06 * bh), int(hip[1] + 0.08 * bh)), 255, -1)
        _paint(img, m, ident.bag_colour)

    arm(phi, 0.7, -0.01 * bh)      # far arm (swings with the near leg)
    leg(phi + np.pi, 0.75)         # far leg
    torso()
    leg(phi, 1.0)                  # near leg
    head()
    bag(True)
    arm(phi + np.pi, 1.0, 0.01 * bh)


def _occluders(img: np.ndarray, seq: _Sequence, t: int) -> None:
    if seq.pole is not None:
        x = seq.pole[0] - seq.scroll * t
        x = (x + _W * 0.5) % (_W * 2.0) - _W * 0.5
        img[:, max(0, int(x)):max(0, int(x + seq.pole[1]))] = seq.pole[2]
    if seq.box is not None and seq.box[0] <= t <= seq.box[1]:
        _, _, y, x, colour = seq.box
        img[int(y):, int(x):int(x + _W * 0.6)] = colour


def _camera(img: np.ndarray, seq: _Sequence, rng: np.random.Generator) -> np.ndarray:
    """Supersampled float RGB -> output-size uint8 RGB with this sequence's camera effects."""
    small = cv2.resize(img, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA) / 255.0
    small = np.power(np.clip(small, 0.0, 1.0), seq.gamma)
    yy, xx = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH].astype(np.float32)
    light = 1.0 + seq.gradient[0] * (yy / FRAME_HEIGHT - 0.5) + seq.gradient[1] * (xx / FRAME_WIDTH - 0.5)
    small = small * seq.gain * light[..., None] + seq.offset
    if seq.blur > 0:
        small = cv2.GaussianBlur(small, (0, 0), seq.blur)
    small = small + rng.normal(0, seq.noise, small.shape).astype(np.float32)
    if seq.mirrored:
        small = small[:, ::-1]
    return np.clip(np.round(small * 255.0), 0, 255).astype(np.uint8)


def render_sequence(seed: int, pid: int, cam: str, min_len: int = 8,
                    max_len: int = 48) -> np.ndarray:
    """Frames of one tracklet as uint8 RGB (T, 128, 64, 3); deterministic in its arguments."""
    if cam not in CAMERAS:
        raise ValueError(f"cam must be one of {CAMERAS}, got {cam!r}")
    ident = _identity(seed, pid)
    rng = np.random.default_rng([seed, pid, 1 + CAMERAS.index(cam)])
    seq = _sequence(rng, ident, cam, min_len, max_len)
    scene = _scene(seed, cam)
    frames = np.empty((seq.length, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    for t in range(seq.length):
        cols = (seq.bg_start + int(round(seq.scroll * t)) + np.arange(_W)) % scene.shape[1]
        canvas = scene[:, cols] * seq.bg_tint
        if os.environ.get("SYN_NOBG"):
            canvas[:] = 128
        _draw_person(canvas, ident, seq, t)
        _occluders(canvas, seq, t)
        frames[t] = _camera(canvas, seq, rng)
    return frames


def _write_person(args: tuple[str, int, int, int, int]) -> int:
    tmp_root, seed, pid, min_len, max_len = args
    for cam in CAMERAS:
        folder = os.path.join(tmp_root, cam, f"person_{pid:04d}")
        os.makedirs(folder, exist_ok=True)
        for i, frame in enumerate(render_sequence(seed, pid, cam, min_len, max_len), start=1):
            ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError(f"{folder}: PNG encoding failed")
            with open(os.path.join(folder, f"{i:04d}.png"), "wb") as f:
                f.write(buf.tobytes())
    return pid


def _manifest_params(num_ids: int, seed: int, min_len: int, max_len: int) -> dict:
    return {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "num_ids": num_ids,
            "seed": seed, "min_len": min_len, "max_len": max_len,
            "height": FRAME_HEIGHT, "width": FRAME_WIDTH}


def _read_manifest(out_root: str) -> dict | None:
    path = os.path.join(out_root, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable synthetic-dataset manifest ({e})") from e


def _check_existing(out_root: str, params: dict) -> bool:
    """True if out_root already holds this exact dataset; raises if it holds anything else."""
    if not os.path.exists(out_root):
        return False
    if not os.path.isdir(out_root):
        raise DatasetError(f"{out_root}: exists and is not a directory")
    found = _read_manifest(out_root)
    if found is None:
        if os.listdir(out_root):
            raise DatasetError(f"{out_root}: folder exists, is not empty and has no {MANIFEST}; "
                               "refusing to write a synthetic dataset into it")
        return False
    if found != params:
        diff = {k: (found.get(k), v) for k, v in params.items() if found.get(k) != v}
        raise DatasetError(f"{out_root}: holds a synthetic dataset generated with different "
                           f"parameters (existing, requested): {diff}; choose another folder "
                           "or delete this one")
    return True


def generate_synthetic(out_root: str, num_ids: int = 100, seed: int = 0, min_len: int = 8,
                       max_len: int = 48, workers: int = 1, progress: bool = True) -> str:
    """Writes a synthetic two-camera dataset to out_root (PRID-2011 layout); returns out_root.

    Idempotent: returns at once if out_root already holds a dataset with these parameters, and
    raises DatasetError if it holds one with other parameters. Frames are written into a
    temporary sibling folder that is renamed into place when complete, so a partially written
    dataset is never visible under out_root.
    """
    if not 1 <= num_ids <= 9999:
        raise ValueError(f"num_ids must be in [1, 9999], got {num_ids}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if not 1 <= min_len <= max_len <= 9999:
        raise ValueError(f"need 1 <= min_len <= max_len <= 9999, got min_len={min_len}, "
                         f"max_len={max_len}")
    out_root = os.path.abspath(out_root)
    params = _manifest_params(int(num_ids), int(seed), int(min_len), int(max_len))
    if _check_existing(out_root, params):
        return out_root
    parent = os.path.dirname(out_root)
    os.makedirs(parent, exist_ok=True)
    tmp_root = os.path.join(parent, f".{os.path.basename(out_root)}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        jobs = [(tmp_root, params["seed"], pid, params["min_len"], params["max_len"])
                for pid in range(1, num_ids + 1)]
        bar = _progress_bar(num_ids, out_root) if progress else None
        if workers > 1:
            with concurrent.futures.ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_write_person, jobs, chunksize=4):
                    if bar is not None:
                        bar.update(1)
        else:
            for job in jobs:
                _write_person(job)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        with open(os.path.join(tmp_root, MANIFEST), "w") as f:
            json.dump(params, f, indent=1, sort_keys=True)
        if os.path.isdir(out_root) and not os.listdir(out_root):
            os.rmdir(out_root)
        try:
            os.rename(tmp_root, out_root)
        except OSError:
            # Another process finished the same dataset first: accept it if it matches.
            if not _check_existing(out_root, params):
                raise
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return out_root


def _progress_bar(total: int, out_root: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"synthetic -> {out_root}", unit="id", file=sys.stderr)


def main(argv) -> None:
    del argv
    from absl import flags

    f = flags.FLAGS
    out = generate_synthetic(f.out, num_ids=f.num_ids, seed=f.seed, min_len=f.min_len,
                             max_len=f.max_len, workers=f.workers, progress=True)
    print(out)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("out", None, "Folder to write the dataset into (PRID-2011 layout).")
    flags.DEFINE_integer("num_ids", 100, "Number of identities.")
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives byte-identical frames.")
    flags.DEFINE_integer("min_len", 8, "Shortest tracklet, in frames.")
    flags.DEFINE_integer("max_len", 48, "Longest tracklet, in frames.")
    flags.DEFINE_integer("workers", 1, "Worker processes.")
    flags.mark_flag_as_required("out")
    app.run(main)
