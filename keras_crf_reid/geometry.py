"""Shapes every module must agree on: frame size, input channel layout, body-part rows, group length.

No I/O and no framework imports here, so readers, the model, evaluation and serving can all
import it without pulling in each other.
"""
from __future__ import annotations

FRAME_HEIGHT = 128
FRAME_WIDTH = 64
# Channels of the model input (preprocess.to_model_input): Y, U, V, then flow x, flow y.
NUM_COLOR_CHANNELS = 3
NUM_FLOW_CHANNELS = 2
NUM_CHANNELS = NUM_COLOR_CHANNELS + NUM_FLOW_CHANNELS
COLOR_SLICE = slice(0, NUM_COLOR_CHANNELS)  # x[..., COLOR_SLICE]: Y, U, V
FLOW_SLICE = slice(NUM_COLOR_CHANNELS, NUM_CHANNELS)  # x[..., FLOW_SLICE]: flow x, flow y
FLOW_X, FLOW_Y = NUM_COLOR_CHANNELS, NUM_COLOR_CHANNELS + 1  # horizontal, vertical displacement
# Floor of a frame's standard deviation when a channel is standardised (YUV, flow_norm=frame_std).
STD_EPS = 1e-3
INPUT_SHAPE = (FRAME_HEIGHT, FRAME_WIDTH, NUM_CHANNELS)
# Frames per evaluation group (the paper's 16-frame sequences); exports record their own.
GROUP_LEN = 16

PARTS = ("full", "upper", "lower")
PART_ROWS = {"full": (0, FRAME_HEIGHT), "upper": (0, FRAME_HEIGHT // 2),
             "lower": (FRAME_HEIGHT // 2, FRAME_HEIGHT)}


def part_rows(part: str) -> tuple[int, int]:
    """Rows [start, stop) of a 128-row frame that a body part's model sees."""
    if part not in PART_ROWS:
        raise ValueError(f"unknown body part {part!r}; expected one of {', '.join(PARTS)}")
    return PART_ROWS[part]


def part_height(part: str) -> int:
    """Input height after cropping a frame to a body part."""
    lo, hi = part_rows(part)
    return hi - lo
