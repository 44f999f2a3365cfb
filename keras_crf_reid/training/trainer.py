"""Custom training loop for the CRF objective (siamese + two softmax terms).

One step embeds both sides of every pair in a single forward pass (the two halves of a 2B
batch), or the P*K sequences of an identity batch (--sampler=pk, losses.pk_loss), computes
per-example losses averaged over the global batch (so tf.distribute strategies sum replica
gradients correctly), clips gradients by global norm, and applies them.
Checkpoints (model, classifier, optimizer, step) go through tf.train.CheckpointManager; the
input stream is indexed by step, so a restored run continues with the batches it had not seen.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import tempfile
import time
from typing import Callable

import keras
import tensorflow as tf
from keras import ops
from tqdm import tqdm

from keras_crf_reid.configs.train import (MIN_FINITE, RUNNING_LOSS_WEIGHTS, STEP_DECAY_AT,
                                          STEP_DECAY_FACTOR, TrainConfig)
from keras_crf_reid.training.distribute import is_chief
from keras_crf_reid.training.losses import batch_loss_terms

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf loss or gradient."""


@keras.saving.register_keras_serializable("keras_crf_reid")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup over `warmup_steps`, then constant, cosine or step decay up to `total_steps`.

    A function of the optimizer's iteration count only, so a restored optimizer (its iterations
    are checkpointed with it) resumes at exactly the learning rate it had reached. Step decay
    multiplies by STEP_DECAY_FACTOR at each fraction STEP_DECAY_AT of `total_steps`
    (configs.train); cosine decays to 0 at `total_steps`. Decay is measured over the whole run,
    warmup included. `schedule` is one of configs.train.LR_SCHEDULES (TrainConfig checks it).
    """

    def __init__(self, learning_rate: float, total_steps: int, schedule: str = "constant",
                 warmup_steps: int = 0):
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.schedule = schedule
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.learning_rate, "float32")
        total = float(max(self.total_steps, 1))
        if self.schedule == "cosine":
            frac = ops.minimum(step / total, 1.0)
            lr = lr * 0.5 * (1.0 + ops.cos(math.pi * frac))
        elif self.schedule == "step":
            for at in STEP_DECAY_AT:
                lr = lr * ops.where(step >= at * total, STEP_DECAY_FACTOR, 1.0)
        if self.warmup_steps > 0:
            lr = lr * ops.minimum((step + 1.0) / float(self.warmup_steps), 1.0)
        return lr

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "total_steps": self.total_steps,
                "schedule": self.schedule, "warmup_steps": self.warmup_steps}


def learning_rate(config: TrainConfig):
    """The optimizer's learning rate: a float when constant (the paper's), else a WarmupDecay."""
    if config.lr_schedule == "constant" and config.warmup_steps == 0:
        return config.learning_rate
    return WarmupDecay(config.learning_rate, config.steps, config.lr_schedule, config.warmup_steps)


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    lr = learning_rate(config)
    decay = {"weight_decay": config.weight_decay} if config.weight_decay else {}
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=config.momentum, **decay)
    else:
        opt = keras.optimizers.Adam(lr, **decay)
    if config.mixed_precision:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def rng_states(model: keras.Model) -> list:
    """State variables of the model's random generators (dropout), which `model.weights` omits."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class Trainer:
    """Trains one CRF embedding model plus its identity classifier."""

    def __init__(self, model: keras.Model, num_classes: int, config: TrainConfig, model_dir: str,
                 strategy: tf.distribute.Strategy | None = None):
        self.config = config
        self.model_dir = model_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        with self.strategy.scope():
            self.model = model
            self.classifier = keras.layers.Dense(num_classes, name="id_classifier", dtype="float32")
            self.classifier.build((None, model.output_shape[-1]))
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self.variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # The dropout generators' [seed, counter] go into the checkpoint too: a resumed run
        # draws the same masks as an uninterrupted one (Keras does not save them with weights).
        self.rng_states = rng_states(self.model)
        # The running loss averages (JSON) too: a resumed run reports the same losses.
        self.running_state = tf.Variable("{}", dtype=tf.string, trainable=False, name="running")
        self.ckpt = tf.train.Checkpoint(model=self.model, classifier=self.classifier,
                                        optimizer=self.optimizer, step=self.step,
                                        rng=list(self.rng_states), running=self.running_state)
        # Every worker of a cluster must take part in saving; only the chief writes to model_dir,
        # the others to a scratch folder removed after fit (the standard tf.distribute pattern).
        self.is_chief = is_chief(self.strategy)
        self.ckpt_dir = os.path.join(model_dir, "ckpt")
        save_dir = self.ckpt_dir if self.is_chief else tempfile.mkdtemp(prefix="crf-worker-ckpt-")
        self.manager = tf.train.CheckpointManager(self.ckpt, save_dir, max_to_keep=config.max_to_keep)
        self._stop_signal: int | None = None

    @property
    def variables(self) -> list:
        return self.model.trainable_variables + self.classifier.trainable_variables

    @property
    def current_step(self) -> int:
        return int(self.step.numpy())

    def restore(self) -> int:
        """Restores the latest checkpoint of model_dir (the chief's), if any; returns the step."""
        latest = tf.train.latest_checkpoint(self.ckpt_dir)
        if latest:
            try:
                self.ckpt.restore(latest).expect_partial()
            except (ValueError, tf.errors.OpError) as e:
                raise ValueError(
                    f"{latest}: cannot resume, the checkpoint was written with a different model "
                    f"or optimizer configuration ({e}); use another --name/--output_dir or the "
                    f"original flags") from e
            log.info("restored %s at step %d", latest, self.current_step)
        return self.current_step

    def _replica_step(self, inputs, targets, global_batch: int):
        cfg = self.config
        pairs = "label" in targets
        if pairs and cfg.metric_loss != "contrastive":
            raise ValueError(f"--metric_loss={cfg.metric_loss} needs identity batches "
                             f"(--sampler=pk); pair batches train the contrastive loss")
        x = tf.concat(list(inputs), 0) if pairs else inputs
        with tf.GradientTape() as tape:
            emb = self.model(x, training=True)
            logits = self.classifier(emb)
            terms = batch_loss_terms(emb, logits, targets, cfg.metric_loss, cfg.margin,
                                     cfg.triplet_margin, cfg.weights)
            loss = tf.nn.compute_average_loss(terms["total"], global_batch_size=global_batch)
            scaled = self.optimizer.scale_loss(loss) if cfg.mixed_precision else loss
        grads = tape.gradient(scaled, self.variables)
        grads, norm = tf.clip_by_global_norm(grads, cfg.clipnorm)
        finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
        grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
        self.optimizer.apply_gradients(zip(grads, self.variables))
        means = {k: tf.nn.compute_average_loss(v, global_batch_size=global_batch)
                 for k, v in terms.items()}
        means["finite"] = tf.cast(finite, tf.float32) / self.strategy.num_replicas_in_sync
        return means

    def _make_step(self, global_batch: int) -> Callable:
        def step(inputs, targets):
            per_replica = self.strategy.run(self._replica_step, args=(inputs, targets, global_batch))
            out = {k: self.strategy.reduce("SUM", v, axis=None) for k, v in per_replica.items()}
            self.step.assign_add(1)
            return out
        return tf.function(step, jit_compile=self.config.jit_compile or None)

    def _save(self, step: int, running: dict[str, float]) -> None:
        self.running_state.assign(json.dumps(running))
        self.manager.save(checkpoint_number=step)

    def _on_signal(self, signum, _frame):
        self._stop_signal = signum

    def fit(self, make_dataset: Callable[[int, tf.distribute.InputContext], tf.data.Dataset],
            global_batch: int,
            eval_fn: Callable[[int], dict] | None = None, progress: bool = True) -> dict:
        """Trains until config.steps; `make_dataset(start_step, input_context)` gives the batches
        of one input pipeline from a step (e.g. pipeline.replica_pairs).

        SIGINT/SIGTERM save a checkpoint and return early. Returns the last running losses.
        """
        cfg = self.config
        start = self.restore()
        if start >= cfg.steps:
            log.info("%s already trained to step %d", self.model_dir, start)
            return {"step": start}
        ds = self.strategy.distribute_datasets_from_function(lambda ctx: make_dataset(start, ctx))
        step_fn = self._make_step(global_batch)
        writer = (tf.summary.create_file_writer(os.path.join(self.model_dir, "tb")) if self.is_chief
                  else tf.summary.create_noop_writer())
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        running: dict[str, float] = json.loads(self.running_state.numpy().decode() or "{}")
        bar = tqdm(total=cfg.steps, initial=start, desc=f"train {self.model.name}", unit="step",
                   disable=not progress, dynamic_ncols=True)
        t0, n0 = time.time(), start
        try:
            it = iter(ds)
            while self.current_step < cfg.steps:
                inputs, targets = next(it)
                out = step_fn(inputs, targets)
                step = self.current_step
                vals = {k: float(v) for k, v in out.items()}
                if vals.pop("finite") < MIN_FINITE:
                    if cfg.on_nan == "stop":
                        raise NonFiniteLossError(
                            f"non-finite loss or gradient at step {step} ({vals}); the update "
                            f"was not applied and no checkpoint was written. Lower "
                            f"--learning_rate or pass --on_nan=skip to skip such batches.")
                    log.warning("step %d: non-finite loss, batch skipped", step)
                    continue
                keep, new = RUNNING_LOSS_WEIGHTS
                for k, v in vals.items():
                    running[k] = v if k not in running else keep * running[k] + new * v
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
                    if not progress and self.is_chief:
                        print(self._log_line(step, running, (step - n0) / max(time.time() - t0, 1e-9)),
                              flush=True)
                    with writer.as_default(step=step):
                        for k, v in running.items():
                            tf.summary.scalar(f"loss/{k}", v)
                        tf.summary.scalar("perf/steps_per_s", (step - n0) / max(time.time() - t0, 1e-9))
                if cfg.ckpt_every and step % cfg.ckpt_every == 0:
                    self._save(step, running)
                if eval_fn and cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                    metrics = eval_fn(step)
                    with writer.as_default(step=step):
                        for k, v in metrics.items():
                            tf.summary.scalar(f"eval/{k}", v)
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.1f}" for k, v in metrics.items()))
                if self._stop_signal is not None:
                    self._save(step, running)
                    bar.write(f"signal {self._stop_signal}: checkpoint saved at step {step}, stopping")
                    break
            else:
                if self.manager.latest_checkpoint is None or \
                        not self.manager.latest_checkpoint.endswith(f"-{self.current_step}"):
                    self._save(self.current_step, running)
        finally:
            bar.close()
            writer.close()
            for s, h in old.items():
                signal.signal(s, h)
            if not self.is_chief:
                shutil.rmtree(self.manager.directory, ignore_errors=True)
        running["step"] = self.current_step
        running["steps_per_s"] = (self.current_step - n0) / max(time.time() - t0, 1e-9)
        return running

    def _log_line(self, step: int, running: dict[str, float], steps_per_s: float) -> str:
        """One line for batch logs: step, running losses, speed, learning rate and ETA."""
        eta = (self.config.steps - step) / steps_per_s if steps_per_s > 0 else float("inf")
        lr = tf.convert_to_tensor(self.optimizer.learning_rate)
        losses = " ".join(f"{k} {v:.4f}" for k, v in running.items())
        return (f"train {self.model.name} step {step}/{self.config.steps}: {losses} | "
                f"{steps_per_s:.2f} steps/s | lr {float(lr):.3g} | ETA {_duration(eta)}")

    @property
    def interrupted(self) -> bool:
        return self._stop_signal is not None


def _duration(seconds: float) -> str:
    """H:MM:SS for a finite duration, "?" otherwise."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
