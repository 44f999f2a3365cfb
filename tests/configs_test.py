"""Config dataclasses import without TensorFlow (issue 18 item 5); every option's choices and
lower bound are checked where a config is built, naming the flag (issue 27 item 2)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BLOCKED = """
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow (or Keras, which needs it) fails
sys.modules["keras"] = None
from absl import flags
from keras_crf_reid.configs import experiment
experiment.define_flags()
flags.FLAGS(["prog", "--fusion_steps=7", "--tta", "--sampler=pk", "--variant=cnn"])
cfg = experiment.config_from_flags()
assert cfg.fusion.steps == 7 and cfg.eval.tta.enabled and cfg.model.variant == "cnn", cfg
assert cfg.pairs.sampler == "pk" and cfg.results_key()["fusion_learning_rate"] == 0.01
from keras_crf_reid.configs import (  # noqa: F401
    client, data, evaluation, export, model, pairs, run, search, server, synthetic, tracker,
    train, tta)
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")
                   and sys.modules[m] is not None))
"""


def test_configs_import_without_tensorflow():
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


def _configs():
    """Every config dataclass of keras_crf_reid.configs, with its option fields."""
    import dataclasses
    import importlib
    import pkgutil

    import keras_crf_reid.configs as pkg
    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"keras_crf_reid.configs.{info.name}")
        for obj in vars(module).values():
            if (dataclasses.is_dataclass(obj) and isinstance(obj, type)
                    and any(f.metadata.get("help") for f in dataclasses.fields(obj))):
                found[obj.__name__] = obj
    return sorted(found.values(), key=lambda c: c.__name__)


def _bad_values():
    """(config class, field, a value outside its choices or below its lower bound)."""
    import dataclasses
    for cls in _configs():
        for f in dataclasses.fields(cls):
            meta, default = f.metadata, getattr(cls(), f.name)
            if meta.get("choices"):
                yield cls, f, (("nonesuch",) if isinstance(default, tuple) else "nonesuch")
            if meta.get("lower_bound") is not None:
                yield cls, f, meta["lower_bound"] - 1


def test_choices_and_lower_bounds_are_checked_for_every_option():
    from keras_crf_reid.options import flag_name
    cases = list(_bad_values())
    assert len(cases) > 30 and {c.__name__ for c, _, _ in cases} >= {
        "DataConfig", "EvalConfig", "RunConfig", "ModelConfig", "PairConfig", "TrainConfig",
        "FusionConfig", "ExperimentConfig"}
    for cls, f, value in cases:
        try:
            cls(**{f.name: value})
        except ValueError as e:
            assert f"--{flag_name(f)}" in str(e), (cls.__name__, f.name, str(e))
        else:
            raise AssertionError(f"{cls.__name__}({f.name}={value!r}) was accepted")


def test_config_classes_are_frozen_and_declare_each_choice_list_once():
    import dataclasses

    from keras_crf_reid.configs import train
    for cls in _configs():
        assert cls.__dataclass_params__.frozen, cls
    fields = {f.name: f for f in dataclasses.fields(train.TrainConfig)}
    fusion = {f.name: f for f in dataclasses.fields(train.FusionConfig)}
    assert fields["optimizer"].metadata["choices"] == fusion["optimizer"].metadata["choices"] \
        == train.OPTIMIZERS
    assert fields["lr_schedule"].metadata["choices"] == train.LR_SCHEDULES
    assert fields["on_nan"].metadata["choices"] == train.ON_NAN


def test_dataset_choices_are_the_readers():
    from keras_crf_reid.configs.data import DATASETS as NAMES
    from keras_crf_reid.datasets import DATASETS
    assert NAMES == tuple(sorted(DATASETS))


def test_seed_offsets_keep_every_model_of_every_split_apart():
    from keras_crf_reid.configs.experiment import (FUSION_SEED_OFFSET, PART_SEED_OFFSETS,
                                                   SPLIT_SEED_STRIDE)
    offsets = [*PART_SEED_OFFSETS.values(), FUSION_SEED_OFFSET]
    assert len(set(offsets)) == len(offsets) and max(offsets) < SPLIT_SEED_STRIDE
