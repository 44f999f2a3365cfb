"""The CRF training step on Keras 3's JAX backend (KERAS_BACKEND=jax), e.g. for a GPU machine
that has JAX but no TensorFlow.

It is trainer.Trainer's step in Keras's stateless API: both sides of every pair in one forward
pass (`model.stateless_call`), `losses.crf_loss` averaged over the batch, gradients by
`jax.value_and_grad`, clipping by global norm, a non-finite loss or gradient zeroing the update
(as the TF step does), and `optimizer.stateless_apply`, all in one `jax.jit` with the state
buffers donated. Only keras, jax, numpy and the TF-free model/loss modules are imported, so it
runs where TensorFlow is not installed. Checkpointing, signals and the input pipeline stay with
the TensorFlow trainer; `JaxTrainStep.sync()` writes the state back into the Keras variables
(for `save_weights` or evaluation).
"""
from __future__ import annotations

import keras
from keras import ops

from keras_crf_reid.training.losses import LossWeights, batch_loss_terms


def require_jax_backend() -> None:
    """Raises with the fix when Keras was not started on the JAX backend."""
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"jax_step needs Keras's JAX backend, but Keras runs on "
                           f"{keras.backend.backend()!r}: set KERAS_BACKEND=jax before Python "
                           f"imports keras")


def clip_by_global_norm(grads: list, clipnorm: float):
    """(grads scaled so their global norm is at most clipnorm, the norm before clipping)."""
    norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in grads))
    scale = clipnorm / ops.maximum(norm, clipnorm)
    return [g * ops.cast(scale, g.dtype) for g in grads], norm


class JaxTrainStep:
    """One jitted CRF training step over (model + identity classifier), state held as arrays.

    `step(inputs, targets)` takes the TF trainer's batch layouts, numpy or jax arrays: pairs,
    inputs (a, b) of shape (B, T, 128, 64, 5) each and targets {"label": (B,), "class_a": (B,),
    "class_b": (B,)} (crf_loss), or a P x K identity batch, inputs (N, T, 128, 64, 5) and
    targets {"class": (N,)} (pk_loss with `metric_loss`; the triplet loss uses
    `triplet_margin`). It returns the batch means of the loss terms and "finite" (1.0 when the
    update was applied) as jax scalars.
    """

    def __init__(self, model: keras.Model, classifier: keras.layers.Layer,
                 optimizer: keras.optimizers.Optimizer, margin: float = 2.0,
                 weights: LossWeights = LossWeights(), clipnorm: float = 10.0,
                 metric_loss: str = "contrastive", triplet_margin: float = 0.3):
        require_jax_backend()
        import jax

        self.model, self.classifier, self.optimizer = model, classifier, optimizer
        self.variables = model.trainable_variables + classifier.trainable_variables
        optimizer.build(self.variables)
        self._n_model = len(model.trainable_variables)
        # Copies: the step donates its state buffers, which must not be the variables' own.
        self.state = tuple([jax.numpy.array(v.value, copy=True) for v in vs] for vs in (
            self.variables, model.non_trainable_variables, optimizer.variables))
        self.margin, self.weights, self.clipnorm = float(margin), weights, float(clipnorm)
        self.metric_loss = metric_loss
        self.triplet_margin = float(triplet_margin)
        self._grad = jax.value_and_grad(self._loss, has_aux=True)
        self._step = jax.jit(self._train, donate_argnums=0)
        self._eval = jax.jit(self._eval_terms)

    def _terms(self, trainable, non_trainable, inputs, targets, training: bool):
        pairs = "label" in targets
        x = ops.concatenate(list(inputs), axis=0) if pairs else inputs
        emb, non_trainable = self.model.stateless_call(
            trainable[:self._n_model], non_trainable, x, training=training)
        logits, _ = self.classifier.stateless_call(trainable[self._n_model:], [], emb)
        terms = batch_loss_terms(emb, logits, targets, self.metric_loss, self.margin,
                                 self.triplet_margin, self.weights)
        return {k: ops.mean(v) for k, v in terms.items()}, non_trainable

    def _loss(self, trainable, non_trainable, inputs, targets):
        means, non_trainable = self._terms(trainable, non_trainable, inputs, targets, True)
        return means["total"], (means, non_trainable)

    def _train(self, state, inputs, targets):
        trainable, non_trainable, opt_vars = state
        (loss, (means, non_trainable)), grads = self._grad(trainable, non_trainable, inputs, targets)
        grads, norm = clip_by_global_norm(grads, self.clipnorm)
        finite = ops.logical_and(ops.isfinite(loss), ops.isfinite(norm))
        grads = [ops.where(finite, g, ops.zeros_like(g)) for g in grads]
        trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
        means["finite"] = ops.cast(finite, "float32")
        return (trainable, non_trainable, opt_vars), means

    def _eval_terms(self, trainable, non_trainable, inputs, targets):
        return self._terms(trainable, non_trainable, inputs, targets, False)[0]

    def __call__(self, inputs, targets) -> dict:
        self.state, means = self._step(self.state, _batch(inputs), dict(targets))
        return means

    def evaluate(self, inputs, targets) -> dict:
        """Batch means of the loss terms with dropout off, at the current state (no update)."""
        trainable, non_trainable, _ = self.state
        return self._eval(trainable, non_trainable, _batch(inputs), dict(targets))

    def sync(self) -> None:
        """Writes the step's state into the Keras variables (model, classifier, optimizer)."""
        trainable, non_trainable, opt_vars = self.state
        for variables, values in ((self.variables, trainable),
                                  (self.model.non_trainable_variables, non_trainable),
                                  (self.optimizer.variables, opt_vars)):
            for v, value in zip(variables, values):
                v.assign(value)


def _batch(inputs):
    """A pair batch's (a, b) as a tuple (a jit-stable pytree); an identity batch as it is."""
    return tuple(inputs) if isinstance(inputs, (list, tuple)) else inputs
