"""Shapes every module must agree on: frame size, input channel layout, body-part rows, group length,
and how colour is normalised in the model input (`preprocess.to_model_input`).

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

# Colour normalisation of the model input's YUV channels (ModelConfig.colour_norm, recorded in
# every export's model_info): "frame_std" standardises each channel of each frame (the paper's;
# it discards each frame's mean colour), "fixed" applies the constant offset and scale below,
# keeping mean colour. The constants are YUV (tf.image.rgb_to_yuv of RGB in [0, 1]) pixel
# statistics of 3,000 random frames of ../shared/realdata/mars_multi/bbox_train (training people
# only), rounded; on mars_sample and the PETS09/TUD tracklets the means differ by < 0.06 and the
# standard deviations by < 2x, so values stay roughly zero-mean and unit-variance on pedestrians.
COLOUR_NORMS = ("frame_std", "fixed")
DEFAULT_COLOUR_NORM = "frame_std"
YUV_FIXED_MEAN = (0.38, -0.017, -0.003)
YUV_FIXED_STD = (0.195, 0.046, 0.086)


def check_colour_norm(colour_norm: str, name: str = "colour_norm") -> str:
    """colour_norm if it is one of COLOUR_NORMS, else ValueError naming `name` and the choices."""
    if colour_norm not in COLOUR_NORMS:
        raise ValueError(f"{name} must be one of {', '.join(COLOUR_NORMS)}, got {colour_norm!r}")
    return colour_norm


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
