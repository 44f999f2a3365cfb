"""Config dataclasses import without TensorFlow: parsing flags never loads it (issue 18 item 5)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BLOCKED = """
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow (or Keras, which needs it) fails
sys.modules["keras"] = None
from absl import flags
from keras_crf_reid.runner import config
config.define_flags()
flags.FLAGS(["prog", "--fusion_steps=7", "--tta", "--sampler=pk", "--variant=cnn"])
cfg = config.config_from_flags()
assert cfg.fusion.steps == 7 and cfg.eval.tta.enabled and cfg.model.variant == "cnn", cfg
assert cfg.pairs.sampler == "pk" and cfg.results_key()["fusion_learning_rate"] == 0.01
from keras_crf_reid.configs import model, pairs, train, tta  # noqa: F401
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")
                   and sys.modules[m] is not None))
"""


def test_runner_config_and_configs_import_without_tensorflow():
    done = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok []"


def test_old_import_names_are_the_moved_classes():
    from keras_crf_reid.configs import model, pairs, train
    from keras_crf_reid.datasets import pipeline
    from keras_crf_reid.models import network
    from keras_crf_reid.training import losses, trainer
    assert network.ModelConfig is model.ModelConfig and pipeline.PairConfig is pairs.PairConfig
    assert trainer.TrainConfig is train.TrainConfig and losses.LossWeights is train.LossWeights
