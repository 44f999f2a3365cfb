"""Command-line flags shared by train, evaluate and experiments (absl).

Flagfiles live in pipelines/; `--flagfile=prid.flags` (a bare name) is looked up there too,
see `resolve_flagfile_argv`.
"""
from __future__ import annotations

import os
import sys

from absl import flags

PIPELINES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines")

# Data
flags.DEFINE_string("dataset", "synthetic", "prid2011 | ilidsvid | mars | prid_layout | synthetic.")
flags.DEFINE_string("data_root", "", "Dataset folder. Empty with --dataset=synthetic: generate one.")
flags.DEFINE_string("data_dir", "data", "Where generated synthetic data is written.")
flags.DEFINE_string("cache_dir", "cache", "Where decoded frames and optical flow are cached.")
flags.DEFINE_integer("num_ids", 100, "Identities of the generated synthetic dataset.")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the generated synthetic dataset.")
flags.DEFINE_integer("min_len", None, "Minimum tracklet length (default: the dataset's protocol).")
flags.DEFINE_enum("on_bad_image", "skip", ["skip", "fail"], "Unreadable frames: skip with a "
                  "warning (counted) or fail.")
flags.DEFINE_integer("num_splits", 10, "Random 50/50 identity splits (PRID-2011, iLIDS-VID).")
flags.DEFINE_list("splits", [], "Split indices to run (default: all --num_splits).")
flags.DEFINE_integer("split_seed", 0, "Seed of the random identity splits.")
# Model
flags.DEFINE_enum("variant", "cnn_rnn", ["cnn", "rnn", "cnn_rnn"], "Embedding: x_C, x_R or x_F.")
flags.DEFINE_list("filters", ["16", "32", "32"], "Filters of the three conv blocks.")
flags.DEFINE_integer("embed_dim", 128, "Embedding size.")
flags.DEFINE_float("dropout", 0.5, "Dropout before the CNN's dense layer.")
flags.DEFINE_list("parts", ["full"], "Part models to train: full,upper,lower; all three -> fusion.")
flags.DEFINE_integer("fusion_steps", 100, "Steps learning the three fusion weights.")
# Training
flags.DEFINE_integer("seq_len", 16, "Frames per training sequence.")
flags.DEFINE_integer("eval_seq_len", 16, "Frames per evaluation group.")
flags.DEFINE_integer("batch_size", 16, "Sequence pairs per batch (even: half positive).")
flags.DEFINE_integer("steps", 1000, "Training steps per part model.")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer.")
flags.DEFINE_float("learning_rate", 1e-3, "Learning rate.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("clipnorm", 10.0, "Gradient clipping by global norm.")
flags.DEFINE_float("margin", 2.0, "Contrastive margin alpha.")
flags.DEFINE_list("loss_weights", ["1", "1", "1"], "W1 (siamese), W2, W3 (softmax of each side).")
flags.DEFINE_bool("augment", True, "Random crop/translation and mirror per sequence.")
flags.DEFINE_integer("seed", 0, "Seed of weights init and pair sampling.")
flags.DEFINE_integer("ckpt_every", 200, "Checkpoint every N steps.")
flags.DEFINE_integer("eval_every", 0, "Evaluate on the test split every N steps (0: at the end).")
flags.DEFINE_enum("on_nan", "stop", ["stop", "skip"], "Non-finite loss: stop, or skip the batch.")
flags.DEFINE_bool("mixed_precision", False, "mixed_float16 compute (GPU).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step.")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy.")
# Outputs
flags.DEFINE_string("name", "demo", "Run name: results under --output_dir/<name>.")
flags.DEFINE_string("output_dir", "runs", "Results, checkpoints and TensorBoard logs.")
flags.DEFINE_bool("export", True, "Export the final model as a SavedModel.")
flags.DEFINE_string("model_base_path", "", "SavedModel base path (default saved_models/<name>).")
flags.DEFINE_bool("baseline", True, "Also report the colour-histogram baseline per split.")
flags.DEFINE_bool("progress", True, "Show progress bars.")


def resolve_flagfile_argv(argv: list[str]) -> list[str]:
    """Rewrites `--flagfile=NAME` to pipelines/NAME when NAME is not a path that exists."""
    out = []
    for arg in argv:
        if arg.startswith("--flagfile="):
            path = arg.split("=", 1)[1]
            if not os.path.exists(path):
                cand = os.path.join(PIPELINES_DIR, path)
                if not os.path.exists(cand) and not path.endswith(".flags"):
                    cand += ".flags"
                if not os.path.exists(cand):
                    sys.exit(f"--flagfile: {path} not found (also looked in {PIPELINES_DIR})")
                arg = f"--flagfile={cand}"
        out.append(arg)
    return out
flags.DEFINE_integer("num_parallel_calls", -1, "Batches the input pipelines prepare concurrently (-1: AUTOTUNE, all cores); the batches do not depend on it.")
