"""Training: the custom training loop (trainer.py), the CRF losses (losses.py), tf.distribute
strategies and the chief (distribute.py), and the same step on Keras's JAX backend (jax_step.py).

Imports nothing here, so the TensorFlow-free modules (losses, jax_step) import without TensorFlow.
"""
