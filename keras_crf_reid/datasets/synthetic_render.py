"""Drawing of the synthetic pedestrians: identities, camera scenes, gait, one rendered sequence.

`render_sequence(seed, pid, cam)` is the whole public surface; `datasets.synthetic` writes the
sequences it returns as a PRID-2011-layout dataset (see its docstring for the design).
"""
from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

from keras_crf_reid.geometry import FRAME_HEIGHT, FRAME_WIDTH

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
# Random streams: [seed, pid, 0] identity, [seed, pid, 1 + camera] that person's sequence in a
# camera, [seed, 0, 1 + camera] the camera's scene (person ids start at 1).
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
_JITTER_GAIN = 0.08
_JITTER_BRIGHTNESS = 0.15
_JITTER_OFFSET = 0.03
_JITTER_GAMMA = 0.1
_JITTER_GRADIENT = 0.1
_BG_JITTER = 0.06


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
                     body_frac=(0.82, 0.97), foot_frac=(0.94, 1.0), blur=(0.0, 0.0),
                     noise=0.012, mirrored=False),
    "cam_b": _Camera(gain=(0.8, 0.95, 1.15), offset=(-0.02, 0.03, 0.07), gamma=1.2,
                     body_frac=(0.74, 0.92), foot_frac=(0.87, 1.0), blur=(0.6, 1.2),
                     noise=0.02, mirrored=True),
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
        wall = np.array((150, 142, 132), np.float32)
        bh = rng.uniform(10, 18)
        bw = bh * rng.uniform(2.0, 3.0)
        row = np.floor(yy / bh)
        mortar = ((yy % bh) < 2) | (((xx + (row % 2) * bw / 2) % bw) < 2)
        tone = _smooth_noise(rng, h, width, 24)[..., None] * 0.25 + 0.88
        bg[:] = np.where(mortar[..., None], np.float32(180.0), wall * tone)
        pave = np.array((135, 133, 128), np.float32)
        tile = rng.uniform(14, 26)
        joints = ((xx % tile) < 2) | ((yy % (tile * 0.6)) < 2)
        ground = pave * (0.85 + 0.3 * _smooth_noise(rng, h, width, 8)[..., None])
        ground = np.where(joints[..., None], ground * 0.7, ground)
    else:
        # mottled stone wall and dark posts over pavement with a kerb line
        stone = np.array((146, 140, 129), np.float32)
        tone = _smooth_noise(rng, h, width, 10) * 0.3 + 0.8
        blobs = _smooth_noise(rng, h, width, 30)
        bg[:] = stone * tone[..., None] * (0.8 + 0.3 * blobs[..., None])
        for _ in range(width // 150):
            x0 = int(rng.uniform(0, width))
            tw = int(rng.uniform(6, 14))
            bg[:horizon, x0:x0 + tw] = np.array((90, 70, 50), np.float32) * rng.uniform(0.7, 1.2)
        pave = np.array((131, 129, 125), np.float32)
        ground = pave * (0.8 + 0.4 * _smooth_noise(rng, h, width, 4)[..., None])
        kerb = (yy > horizon) & (yy < horizon + rng.uniform(4, 9))
        ground = np.where(kerb[..., None], np.float32(190.0), ground)
    bg = np.where((yy >= horizon)[..., None], ground, bg)
    # palette-coloured signs and posters, so the backdrop shares colours with the clothing
    for _ in range(width // 256):
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
    if rng.random() < 0.35:
        pole = (float(rng.uniform(-_W * 0.5, _W * 1.5)), float(rng.uniform(6, 14)),
                np.array((70, 70, 75), np.float32) * rng.uniform(0.6, 1.6))
    box = None
    if rng.random() < 0.25:
        first = int(rng.integers(0, length))
        last = int(min(length - 1, first + rng.integers(length // 3, length + 1)))
        box = (first, last, float(foot_y - body_h * rng.uniform(0.15, 0.45)),
               float(rng.uniform(0.0, _W * 0.5)),
               PALETTE[rng.integers(len(PALETTE))] * rng.uniform(0.7, 1.1))
    return _Sequence(
        length=length, phase=float(rng.uniform(0, 2 * np.pi)), freq=freq,
        body_h=body_h, foot_y=foot_y,
        x0=_W / 2 + rng.uniform(-0.15, 0.15) * _W, drift=float(rng.uniform(-0.8, 0.8)),
        scroll=float(body_h * freq * rng.uniform(0.6, 1.0)),
        bg_start=int(rng.integers(_PANORAMA_WIDTH)),
        bg_tint=rng.uniform(1 - _BG_JITTER, 1 + _BG_JITTER, 3).astype(np.float32),
        gain=np.asarray(c.gain, np.float32)
        * np.exp(rng.normal(0, _JITTER_GAIN, 3)).astype(np.float32)
        * np.float32(np.exp(rng.normal(0, _JITTER_BRIGHTNESS))),
        offset=np.asarray(c.offset, np.float32)
        + rng.normal(0, _JITTER_OFFSET, 3).astype(np.float32),
        gamma=float(c.gamma * np.exp(rng.normal(0, _JITTER_GAMMA))),
        gradient=rng.normal(0, _JITTER_GRADIENT, 2).astype(np.float32),
        blur=float(blur), noise=c.noise, mirrored=c.mirrored, pole=pole, box=box,
    )


def _line(img: np.ndarray, p0, p1, thickness: float, colour) -> None:
    (x0, y0), (x1, y1) = np.round(np.array([p0, p1])).astype(int).tolist()
    cv2.line(img, (x0, y0), (x1, y1), _c(colour), max(1, int(round(thickness))), cv2.LINE_8)


def _c(colour) -> tuple[float, float, float]:
    """A colour as the tuple OpenCV drawing functions take."""
    return tuple(float(v) for v in colour)


def _leg_points(hip, body_h: float, swing: float, flex: float):
    thigh, shin = 0.245 * body_h, 0.235 * body_h
    knee = (hip[0] + thigh * np.sin(swing), hip[1] + thigh * np.cos(swing))
    a = swing - flex
    ankle = (knee[0] + shin * np.sin(a), knee[1] + shin * np.cos(a))
    return knee, ankle


def _texture_mask(ident: Identity, u: np.ndarray, v: np.ndarray, torso_w: float,
                  torso_h: float) -> np.ndarray:
    """Where the shirt shows its accent colour; u, v: offsets from the collar in body heights."""
    p = ident.period
    if ident.texture == "hstripes":
        return (np.floor(v / p) % 2) == 1
    if ident.texture == "vstripes":
        return (np.floor(u / p) % 2) == 1
    if ident.texture == "checks":
        return ((np.floor(u / p) + np.floor(v / p)) % 2) == 1
    if ident.texture == "logo":
        lx, ly, lw, lh = ident.logo
        return (np.abs(u / torso_w - lx) < lw / 2) & (np.abs(v / torso_h - ly) < lh / 2)
    return np.zeros(u.shape, bool)


def _draw_person(img: np.ndarray, ident: Identity, seq: _Sequence, t: int) -> None:
    """Draws the walker at frame t onto the supersampled canvas, walking towards +x."""
    bh = seq.body_h
    phi = seq.phase + 2 * np.pi * seq.freq * t
    cx = seq.x0 + seq.drift * t
    top = seq.foot_y - bh - ident.bounce * bh * abs(np.sin(phi))
    hip = (cx, top + 0.52 * bh)
    shoulder_y = top + 0.18 * bh
    torso_w = 0.28 * bh * ident.width
    limb_w = 0.105 * bh * (0.8 + 0.2 * ident.width)
    arm_w = 0.075 * bh * (0.8 + 0.2 * ident.width)
    head_r = 0.07 * bh * ident.head
    h, w = img.shape[:2]

    def leg(side_phase: float, shade: float) -> None:
        swing = ident.leg_swing * np.sin(side_phase)
        flex = ident.knee_flex * max(0.0, np.cos(side_phase))
        knee, ankle = _leg_points(hip, bh, swing, flex)
        _line(img, hip, knee, limb_w, ident.skin * shade)
        _line(img, knee, ankle, limb_w * 0.9, ident.skin * shade)
        if ident.shorts:
            mid = (hip[0] + 0.6 * (knee[0] - hip[0]), hip[1] + 0.6 * (knee[1] - hip[1]))
            _line(img, hip, mid, limb_w * 1.15, ident.trousers * shade)
        else:
            _line(img, hip, knee, limb_w, ident.trousers * shade)
            _line(img, knee, ankle, limb_w * 0.9, ident.trousers * shade)
        toe = (ankle[0] + 0.075 * bh, ankle[1] + 0.01 * bh)
        _line(img, ankle, toe, limb_w * 0.7, ident.shoes * shade)

    def arm(side_phase: float, shade: float, dx: float) -> None:
        a = -ident.arm_swing * np.sin(side_phase)
        sh = (cx + dx, shoulder_y + 0.02 * bh)
        upper, fore = 0.17 * bh, 0.16 * bh
        elbow = (sh[0] + upper * np.sin(a), sh[1] + upper * np.cos(a))
        a2 = a + 0.25 + 0.3 * max(0.0, a)
        hand = (elbow[0] + fore * np.sin(a2), elbow[1] + fore * np.cos(a2))
        _line(img, sh, elbow, arm_w, ident.shirt * shade)
        if ident.long_sleeves:
            _line(img, elbow, hand, arm_w * 0.9, ident.shirt * shade)
        else:
            _line(img, elbow, hand, arm_w * 0.8, ident.skin * shade)
        cv2.circle(img, tuple(np.round(hand).astype(int).tolist()), max(1, int(arm_w * 0.55)),
                   _c(ident.skin * shade), -1)

    def torso() -> None:
        lean = 0.03 * bh
        pts = np.array([(cx - torso_w / 2 + lean, shoulder_y),
                        (cx + torso_w / 2 + lean, shoulder_y),
                        (cx + torso_w * 0.45, hip[1] + 0.04 * bh),
                        (cx - torso_w * 0.45, hip[1] + 0.04 * bh)])
        pts = np.round(pts).astype(np.int32)
        # draw (and texture) only inside the torso's bounding box
        x0, y0 = max(0, pts[:, 0].min()), max(0, pts[:, 1].min())
        x1, y1 = min(w, pts[:, 0].max() + 1), min(h, pts[:, 1].max() + 1)
        if x1 > x0 and y1 > y0:
            mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillConvexPoly(mask, pts - np.array([x0, y0], np.int32), 255)
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            accent = _texture_mask(ident, (xx - cx) / bh, (yy - shoulder_y) / bh,
                                   torso_w / bh, (hip[1] - shoulder_y) / bh)
            tex = np.where(accent[..., None], ident.accent, ident.shirt)
            box = img[y0:y1, x0:x1]
            box[mask > 0] = tex[mask > 0]
        # trouser waistband over the hips
        cv2.rectangle(img, (int(cx - torso_w * 0.45), int(hip[1] - 0.03 * bh)),
                      (int(cx + torso_w * 0.45), int(hip[1] + 0.05 * bh)), _c(ident.trousers), -1)

    def head() -> None:
        hc = (cx + 0.04 * bh, top + head_r * 1.05)
        skin = _c(ident.skin)
        _line(img, (cx + 0.02 * bh, hc[1]), (cx + 0.02 * bh, shoulder_y + 2), head_r * 0.7, skin)
        cv2.ellipse(img, (int(hc[0]), int(hc[1])), (int(head_r * 0.9), int(head_r * 1.05)),
                    0, 0, 360, skin, -1)
        hair = _c(ident.hair)
        cv2.ellipse(img, (int(hc[0] - head_r * 0.15), int(hc[1] - head_r * 0.15)),
                    (int(head_r * 0.95), int(head_r * 0.95)), 0, 150, 360, hair, -1)
        if ident.hair_length > 0:
            x_back = hc[0] - head_r * 0.95
            pts = np.array([(x_back, hc[1] - head_r * 0.3), (hc[0], hc[1] - head_r * 0.3),
                            (hc[0] - head_r * 0.3, top + ident.hair_length * bh + head_r),
                            (x_back - 0.01 * bh, top + ident.hair_length * bh + head_r)])
            cv2.fillConvexPoly(img, np.round(pts).astype(np.int32), hair)

    def bag() -> None:
        colour = _c(ident.bag_colour)
        if ident.bag == "backpack":
            x1 = cx - torso_w * 0.35
            cv2.rectangle(img, (int(x1 - 0.12 * bh), int(shoulder_y + 0.02 * bh)),
                          (int(x1 + 0.02 * bh), int(shoulder_y + 0.22 * bh)), colour, -1)
        elif ident.bag == "shoulder":
            sx = cx + (0.1 if ident.bag_front else -0.1) * bh
            _line(img, (cx - torso_w * 0.3, shoulder_y), (sx, hip[1] - 0.02 * bh), 0.02 * bh,
                  colour)
            cv2.rectangle(img, (int(sx - 0.06 * bh), int(hip[1] - 0.04 * bh)),
                          (int(sx + 0.06 * bh), int(hip[1] + 0.08 * bh)), colour, -1)

    arm(phi, 0.7, -0.01 * bh)      # far arm (swings with the near leg)
    leg(phi + np.pi, 0.75)         # far leg
    torso()
    leg(phi, 1.0)                  # near leg
    head()
    bag()
    arm(phi + np.pi, 1.0, 0.01 * bh)


def _occluders(img: np.ndarray, seq: _Sequence, t: int) -> None:
    """A pole scrolling with the background and a box in front of the legs, when drawn."""
    if seq.pole is not None:
        x = seq.pole[0] - seq.scroll * t
        x = (x + _W * 0.5) % (_W * 2.0) - _W * 0.5
        img[:, max(0, int(x)):max(0, int(x + seq.pole[1]))] = seq.pole[2]
    if seq.box is not None and seq.box[0] <= t <= seq.box[1]:
        _, _, y, x, colour = seq.box
        img[int(y):, int(x):int(x + _W * 0.6)] = colour


def _light(seq: _Sequence) -> np.ndarray:
    """Per-pixel, per-channel gain (H, W, 3): the camera gain times an illumination gradient."""
    yy, xx = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH].astype(np.float32)
    ramp = (1.0 + seq.gradient[0] * (yy / FRAME_HEIGHT - 0.5)
            + seq.gradient[1] * (xx / FRAME_WIDTH - 0.5))
    return ramp[..., None] * seq.gain


def _camera(img: np.ndarray, seq: _Sequence, light: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Supersampled float RGB -> output-size uint8 RGB with this sequence's camera effects."""
    small = cv2.resize(img, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA) / 255.0
    small = np.power(np.clip(small, 0.0, 1.0), seq.gamma)
    small = small * light + seq.offset
    if seq.blur > 0:
        small = cv2.GaussianBlur(small, (0, 0), seq.blur)
    small = small + rng.normal(0, seq.noise, small.shape).astype(np.float32)
    if seq.mirrored:
        small = small[:, ::-1]
    return np.clip(np.round(small * 255.0), 0, 255).astype(np.uint8)


def render_sequence(seed: int, pid: int, cam: str, min_len: int = 8,
                    max_len: int = 48, variant: int = 0) -> np.ndarray:
    """Frames of one tracklet as uint8 RGB (T, 128, 64, 3); deterministic in its arguments.

    `variant` > 0 gives another walk of the same person in the same camera (several tracks).
    """
    if cam not in CAMERAS:
        raise ValueError(f"cam must be one of {CAMERAS}, got {cam!r}")
    ident = _identity(seed, pid)
    rng = np.random.default_rng([seed, pid, 1 + CAMERAS.index(cam)] + ([variant] if variant else []))
    seq = _sequence(rng, ident, cam, min_len, max_len)
    scene = _scene(seed, cam)
    light = _light(seq)
    frames = np.empty((seq.length, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8)
    for t in range(seq.length):
        cols = (seq.bg_start + int(round(seq.scroll * t)) + np.arange(_W)) % scene.shape[1]
        canvas = np.ascontiguousarray(scene[:, cols] * seq.bg_tint)
        _draw_person(canvas, ident, seq, t)
        _occluders(canvas, seq, t)
        frames[t] = _camera(canvas, seq, light, rng)
    return frames
