"""SavedModel export: TF Serving layout, signatures, atomic versions, loader checks, CLI."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_crf_reid.datasets.preprocess import to_model_input
from keras_crf_reid.models import factory
from keras_crf_reid.models.network import ModelConfig, build_crf_model
from keras_crf_reid.serving import contract, export

TINY = ModelConfig(filters=(4, 4, 4), embed_dim=16, dropout=0.0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return build_crf_model(TINY)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("export") / "crf_reid")
    return base, export.export_saved_model(model, base)


def test_layout_and_versions(exported):
    base, path = exported
    assert path == os.path.join(base, "1")
    assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(path))
    assert os.path.isfile(os.path.join(path, contract.WARMUP_FILE))
    assert os.listdir(base) == ["1"], "no temporary directory may be left behind"


def test_serving_default_matches_keras(model, exported):
    loaded = contract.load_saved_model(exported[0])
    x = np.random.default_rng(0).normal(size=(2, 5, 128, 64, 5)).astype(np.float32)
    out = loaded.signatures["serving_default"](frames=tf.constant(x))
    assert set(out) == {"embedding"}
    np.testing.assert_allclose(out["embedding"].numpy(), model(x, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("size", [(128, 64), (256, 128)])
def test_raw_signature_is_preprocessing_plus_model(model, exported, size):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(2, 3, *size, 3), dtype=np.uint8)
    flow = rng.uniform(-1, 1, size=(2, 3, 128, 64, 2)).astype(np.float32)
    loaded = contract.load_saved_model(exported[1])
    got = loaded.signatures["embed_raw"](rgb=tf.constant(rgb), flow=tf.constant(flow))["embedding"]
    small = tf.image.resize(rgb.reshape(-1, *size, 3), (128, 64), method="area")
    small = tf.cast(tf.round(small), tf.uint8).numpy().reshape(2, 3, 128, 64, 3)
    if size == (128, 64):
        np.testing.assert_array_equal(small, rgb)
    want = model(to_model_input(small, flow), training=False).numpy()
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_raw_signature_rejects_mismatched_flow(exported):
    loaded = contract.load_saved_model(exported[1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch and time"):
        loaded.signatures["embed_raw"](rgb=tf.zeros((1, 3, 128, 64, 3), tf.uint8),
                                       flow=tf.zeros((1, 2, 128, 64, 2)))


def test_raw_signature_checks_shapes_before_any_op_that_uses_them(model):
    """The shape check is an ancestor (control dependency) of the model input's concat, so a
    mismatched request always gets the check's message, never a concat error that depends on
    the executor's op order (it did under load)."""
    fn = export._ServingModule(model, group_len=2).embed_raw.get_concrete_function()
    ops = fn.graph.get_operations()
    asserts = [op for op in ops if op.type == "Assert"]
    concats = [op for op in ops if op.type == "ConcatV2" and len(op.inputs) > 2
               and op.inputs[0].shape.rank == 5]
    assert asserts and concats, [op.type for op in ops]

    def ancestors(op):
        seen, todo = set(), [op]
        while todo:
            o = todo.pop()
            for parent in [t.op for t in o.inputs] + list(o.control_inputs):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    for concat in concats:
        assert set(asserts) & ancestors(concat), concat.name


def test_versions_overwrite_and_refusal(model, tmp_path):
    base = str(tmp_path / "m")
    assert export.export_saved_model(model, base).endswith(os.sep + "1")
    assert export.export_saved_model(model, base, version=7).endswith(os.sep + "7")
    assert export.export_saved_model(model, base, group_len=3).endswith(os.sep + "8")
    with pytest.raises(FileExistsError, match="version 7 already exists"):
        export.export_saved_model(model, base, version=7)
    keras.utils.set_random_seed(5)
    other = build_crf_model(TINY)
    export.export_saved_model(other, base, version=7, overwrite=True)
    assert sorted(os.listdir(base)) == ["1", "7", "8"]
    x = np.ones((1, 2, 128, 64, 5), np.float32)
    got = contract.load_saved_model(os.path.join(base, "7")).signatures["serving_default"](frames=x)
    np.testing.assert_allclose(got["embedding"].numpy(), other(x).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="non-negative integer"):
        export.export_saved_model(model, base, version=-1)


def test_same_weights_are_not_exported_twice(model, tmp_path):
    """Re-running a finished command returns the latest version instead of a duplicate."""
    base = str(tmp_path / "m")
    first = export.export_saved_model(model, base, group_len=4)
    assert export.export_saved_model(model, base, group_len=4) == first
    assert os.listdir(base) == ["1"]
    assert export.export_saved_model(model, base, group_len=5).endswith(os.sep + "2")
    keras.utils.set_random_seed(9)
    assert export.export_saved_model(build_crf_model(TINY), base, group_len=5).endswith(os.sep + "3")
    # an explicit version is always written
    assert export.export_saved_model(model, base, version=9, group_len=4).endswith(os.sep + "9")
    assert contract.list_versions(base) == [1, 2, 3, 9]


def test_abandoned_export_folders_are_cleaned(model, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid, alive_pid = int(dead.stdout), os.getppid()
    base = tmp_path / "m"
    for name in (f".tmp-1-{dead_pid}", f".old-2-{dead_pid}", f".tmp-3-{alive_pid}",
                 f".tmp-4-{alive_pid}", "keep-me"):
        (base / name / "variables").mkdir(parents=True)
    old = __import__("time").time() - 2 * export.SCRATCH_MAX_AGE_S
    os.utime(base / f".tmp-4-{alive_pid}", (old, old))
    export.export_saved_model(model, str(base))
    # a live writer's recent folder stays; dead writers' and stale ones go
    assert sorted(os.listdir(base)) == sorted([f".tmp-3-{alive_pid}", "1", "keep-me"])


def test_list_versions_ignores_temp_and_files(tmp_path):
    for name in ("3", "12", ".tmp-13-99", "abc", "4x"):
        (tmp_path / name).mkdir()
    (tmp_path / "20").write_text("not a dir")
    assert contract.list_versions(str(tmp_path)) == [3, 12]


def test_loader_refuses_incomplete(exported, tmp_path):
    missing_pb = tmp_path / "a"
    (missing_pb / "variables").mkdir(parents=True)
    with pytest.raises(contract.SavedModelError, match="missing saved_model.pb"):
        contract.check_saved_model_dir(str(missing_pb))
    missing_vars = tmp_path / "b"
    missing_vars.mkdir()
    (missing_vars / "saved_model.pb").write_bytes(b"")
    with pytest.raises(contract.SavedModelError, match=r"b: not a complete SavedModel: missing variables/"):
        contract.load_saved_model(str(missing_vars))
    base = tmp_path / "base"
    (base / "1").mkdir(parents=True)
    with pytest.raises(contract.SavedModelError, match="base path holding a complete"):
        contract.load_saved_model(str(base))
    with pytest.raises(contract.SavedModelError, match="does not exist"):
        contract.load_saved_model(str(tmp_path / "nope"))


def test_restore_checkpoint_refuses_partial(tmp_path):
    small = build_crf_model(ModelConfig(variant="cnn", filters=(4, 4, 4), embed_dim=16))
    prefix = tf.train.Checkpoint(model=small).save(str(tmp_path / "ckpt" / "ckpt"))
    with pytest.raises(ValueError, match="weights"):
        factory.restore_checkpoint(prefix, TINY)
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint"):
        factory.restore_checkpoint(str(tmp_path / "empty"), TINY)


def test_saved_model_cli_shows_signatures(exported):
    cmd = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all",
           "--dir", exported[1]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    for text in ("signature_def['serving_default']", "signature_def['embed_raw']", "inputs['frames']",
                 "dtype: DT_FLOAT", "shape: (-1, -1, 128, 64, 5)", "outputs['embedding']",
                 "shape: (-1, 16)", "inputs['rgb']", "dtype: DT_UINT8", "shape: (-1, -1, -1, -1, 3)",
                 "inputs['flow']", "shape: (-1, -1, 128, 64, 2)", "tensorflow/serving/predict"):
        assert text in out, text


def test_cli_exports_keras_file(model, tmp_path):
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    base = str(tmp_path / "crf_reid")
    cmd = [sys.executable, "-m", "keras_crf_reid.serving.export", f"--keras_model={path}",
           f"--model_base_path={base}", "--version=3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"export_dir"' in done.stdout and contract.list_versions(base) == [3]


def test_export_records_group_len_used_by_load(model, tmp_path):
    path = export.export_saved_model(model, str(tmp_path / "g"), group_len=8)
    loaded = tf.saved_model.load(path)
    assert contract.INFO_SIGNATURE in loaded.signatures
    info = loaded.signatures[contract.INFO_SIGNATURE]()
    assert int(info[contract.GROUP_LEN_OUTPUT][0]) == 8
    assert int(info[contract.EMBED_DIM_OUTPUT][0]) == model.output_shape[-1]
    assert contract.group_len_of(loaded) == 8
    from keras_crf_reid.serving import inference
    assert inference.load(str(tmp_path / "g")).group_len == 8
    assert inference.load(str(tmp_path / "g"), group_len=4).group_len == 4
    with pytest.raises(ValueError, match="group_len"):
        export.export_saved_model(model, str(tmp_path / "bad"), group_len=0)


@pytest.mark.parametrize("part", ["upper", "fusion"])
def test_cli_exports_a_part_or_fusion_checkpoint(tmp_path, part):
    """A trainer-style checkpoint of an upper-body model (or the fusion) exports by --part alone."""
    import keras
    from keras_crf_reid.models.factory import build_model
    keras.utils.set_random_seed(4)
    trained = build_model(TINY, part)
    optimizer = keras.optimizers.Adam()
    optimizer.build(trained.trainable_variables)
    tf.train.Checkpoint(model=trained, optimizer=optimizer).save(str(tmp_path / "ckpt" / "ckpt"))
    base = str(tmp_path / "sm")
    flags = [f"--filters={','.join(map(str, TINY.filters))}", f"--embed_dim={TINY.embed_dim}"]
    cmd = [sys.executable, "-m", "keras_crf_reid.serving.export", f"--checkpoint={tmp_path / 'ckpt'}",
           f"--part={part}", *flags, f"--model_base_path={base}", "--group_len=8"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"group_len": 8' in done.stdout
    x = np.random.default_rng(5).normal(size=(2, 3, 128, 64, 5)).astype(np.float32)
    served = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
    np.testing.assert_allclose(served(frames=tf.constant(x))["embedding"].numpy(),
                               trained(x, training=False).numpy(), atol=1e-5)
    other = "--part=fusion" if part == "upper" else "--part=full"
    wrong = subprocess.run(cmd[:-2] + [f"--model_base_path={base}2", other], capture_output=True,
                           text=True, timeout=180, cwd=ROOT)
    assert wrong.returncode == 2 and "checkpoint does not hold the weights" in wrong.stderr


def test_missing_serving_apis_say_how_to_install(monkeypatch):
    import sys as _sys
    monkeypatch.setitem(_sys.modules, "tensorflow_serving.apis", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps tensorflow-serving-api==2.21.0"):
        contract.serving_apis()


def test_cli_export_of_a_checkpoint_equals_the_run_export(tmp_path):
    """With the run's TTA flags, exporting a checkpoint by hand gives the run's own export."""
    from keras_crf_reid.configs.evaluation import EvalConfig
    from keras_crf_reid.configs.experiment import ExperimentConfig
    from keras_crf_reid.configs.run import RunConfig
    from keras_crf_reid.configs.tta import TTAConfig
    from keras_crf_reid.models.factory import build_model
    from keras_crf_reid.runner import experiment
    from keras_crf_reid.runner.split import split_dir
    tta = TTAConfig(enabled=True, views=("identity", "mirror_crop_top_left"), crop_scale=0.8)
    cfg = ExperimentConfig(model=TINY, eval=EvalConfig(seq_len=6, tta=tta),
                           run=RunConfig(name="run", output_dir=str(tmp_path),
                                         model_base_path=str(tmp_path / "run_sm")))
    keras.utils.set_random_seed(6)
    trained = build_model(TINY, "full")
    ckpt = os.path.join(split_dir(cfg, 0), "full", "ckpt")
    tf.train.Checkpoint(model=trained).save(os.path.join(ckpt, "ckpt"))
    keras.backend.clear_session()  # as a run does after its splits: fresh layer names
    run_export = experiment.export_final(cfg, 0)["export"]
    cmd = [sys.executable, "-m", "keras_crf_reid.serving.export", f"--checkpoint={ckpt}",
           f"--filters={','.join(map(str, TINY.filters))}", f"--embed_dim={TINY.embed_dim}",
           "--tta", "--tta_views=identity,mirror_crop_top_left", "--tta_crop_scale=0.8",
           "--group_len=6", f"--model_base_path={tmp_path / 'cli_sm'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    digest = lambda d: open(os.path.join(d, export.DIGEST_FILE)).read()
    assert digest(str(tmp_path / "cli_sm" / "1")) == digest(run_export)
    assert export.export_digest(trained, 6) + "\n" != digest(run_export)  # the TTA wrapper counts
    x = np.random.default_rng(7).normal(size=(2, 3, 128, 64, 5)).astype(np.float32)
    served = [tf.saved_model.load(d).signatures["serving_default"](frames=tf.constant(x))["embedding"]
              for d in (run_export, str(tmp_path / "cli_sm" / "1"))]
    np.testing.assert_array_equal(served[0].numpy(), served[1].numpy())
