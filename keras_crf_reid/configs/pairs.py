"""How training batches are sampled and augmented (keras_crf_reid.datasets builds them); no TF."""
from __future__ import annotations


from keras_crf_reid.options import config_class, option

AUTOTUNE = -1  # tf.data.AUTOTUNE
SAMPLERS = ("pairs", "pk")


@config_class
class PairConfig:
    """How training pairs are sampled and augmented."""

    seq_len: int = option(16, "Frames per training sequence (a random window of a tracklet).",
                          lower_bound=1)
    batch_size: int = option(16, "Sequence pairs per batch (even: half positive, half negative).")
    augment: bool = option(True, "Random crop/translation and mirror per sequence.")
    min_crop_scale: float = option(0.8, "Smallest random crop, as a fraction of the frame side.")
    flip: bool = option(True, "Random horizontal mirror (negates horizontal flow) with --augment.")
    seed: int = option(0, "Seed of weight initialisation and pair sampling.")
    stream: int = option(0, "Input pipeline of a distributed run (0: the single stream).", cli=False,
                         results=False)
    color_jitter: float = option(0.0, "Colour jitter strength j per training sequence: "
                                 "brightness/contrast/saturation x U(1-j, 1+j), hue +-0.1j turn.")
    random_erase: float = option(0.0, "Probability of erasing one random rectangle (all "
                                 "channels 0) of each training sequence.")
    num_parallel_calls: int = option(-1, "Batches prepared concurrently by every pipeline map "
                                     "(-1: tf.data.AUTOTUNE, the machine's cores).", results=False)
    sampler: str = option("pairs", "Training batches: pairs (the paper's: --batch_size pairs, "
                          "half positive across cameras, half negative) or pk (--num_persons "
                          "persons x --num_instances tracklets each, from different cameras "
                          "where the person has them; --batch_size unused).",
                          choices=SAMPLERS)
    num_persons: int = option(8, "P: persons per batch with --sampler=pk.")
    num_instances: int = option(4, "K: tracklets per person with --sampler=pk (a person with "
                                "fewer repeats some).")

    @property
    def global_batch(self) -> int:
        """Examples the per-example losses of a batch are averaged over: pairs or P*K sequences."""
        return self.num_persons * self.num_instances if self.sampler == "pk" else self.batch_size

    def __post_init__(self):
        if self.sampler == "pk" and (self.num_persons < 2 or self.num_instances < 2):
            raise ValueError(f"--sampler=pk needs --num_persons >= 2 (negatives) and "
                             f"--num_instances >= 2 (positives), got {self.num_persons} and "
                             f"{self.num_instances}")
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"--batch_size must be an even number >= 2 (half positive, half "
                             f"negative pairs), got {self.batch_size}")
        if not 0.1 <= self.min_crop_scale <= 1.0:
            raise ValueError(f"--min_crop_scale must be in [0.1, 1], got {self.min_crop_scale}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"--color_jitter must be in [0, 1), got {self.color_jitter}")
        if not 0.0 <= self.random_erase <= 1.0:
            raise ValueError(f"--random_erase must be a probability in [0, 1], got {self.random_erase}")
        check_parallel_calls(self.num_parallel_calls)


def check_parallel_calls(n: int) -> int:
    """`n` if it is a valid num_parallel_calls (>= 1, or -1 for AUTOTUNE); ValueError otherwise."""
    if n != AUTOTUNE and n < 1:
        raise ValueError(f"--num_parallel_calls must be >= 1 or -1 (AUTOTUNE), got {n}")
    return n
