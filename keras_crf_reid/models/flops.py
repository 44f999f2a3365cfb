"""Analytic FLOP counts of the CRF network, and the machine's measured matmul peak.

The benchmarks report achieved FLOP/s as a fraction of a measured dense-matmul peak, so the
counts here follow the usual convention: a multiply-accumulate is 2 FLOPs, bias adds count 1
per output, max-pooling 1 per input element, and activations, reshapes and the per-sequence
temporal means are ignored (well under 1% of the total). This is exactly what tf.profiler counts
for the traced graph (see tests/flops_test.py).

A training step costs the forward pass, the weight gradients (the same multiply-accumulates
again) and the input gradients of every layer but the first convolution (the frames are data,
so TensorFlow does not compute their gradient): about 2.7x forward for the paper's model,
rather than the customary 3x.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

from keras_crf_reid.configs.model import ModelConfig
from keras_crf_reid.geometry import FRAME_WIDTH, NUM_CHANNELS


def crf_flops_breakdown(config: ModelConfig, frames: int) -> dict[str, int]:
    """Forward FLOPs per layer for `frames` frames (summed over sequences and batch)."""
    h, w, cin = config.input_height, FRAME_WIDTH, NUM_CHANNELS
    k2 = config.kernel_size ** 2
    out: dict[str, int] = {}
    for i, cout in enumerate(config.filters):
        out[f"conv{i + 1}"] = (2 * k2 * cin * cout + cout) * h * w
        out[f"pool{i + 1}"] = h * w * cout  # 2x2 window, stride 2: every input read once
        h, w, cin = h // 2, w // 2, cout
    flat, d = h * w * cin, config.embed_dim
    out["fc"] = 2 * flat * d + d
    if config.variant in ("rnn", "cnn_rnn"):
        out["rnn"] = 2 * (2 * d * d) + 2 * d  # W_i f_t + W_s r_{t-1}, two adds
    return {k: v * frames for k, v in out.items()}


def crf_forward_flops(config: ModelConfig, frames: int) -> int:
    """Forward FLOPs of the CRF network over `frames` frames (e.g. batch * seq_len)."""
    return int(sum(crf_flops_breakdown(config, frames).values()))


def crf_train_flops(config: ModelConfig, frames: int) -> int:
    """FLOPs of one training step over `frames` frames: 3x forward less conv1's input gradient."""
    first_conv_input_grad = 2 * config.kernel_size ** 2 * NUM_CHANNELS * config.filters[0] \
        * config.input_height * FRAME_WIDTH * frames
    return 3 * crf_forward_flops(config, frames) - first_conv_input_grad


def matmul_probe(size: int = 2048, chain: int = 4,
                 dtype: str = "float32") -> Callable[[], tuple[float, float]]:
    """A warmed-up callable timing `chain` chained (size x size) matmuls.

    Each call returns (GFLOP/s, GFLOP per process CPU second). Benchmarks call it between their
    own timed runs, so that peak and workload are sampled under the same load on a shared
    machine; the per-CPU-second figure is the one that load disturbs least. The matmuls run in
    a tf.function, or in jax.jit when Keras runs on its JAX backend (the peak of the framework
    the workload runs in, on the device it uses).
    """
    import keras

    run, a, b = (_jax_chain if keras.backend.backend() == "jax" else _tf_chain)(size, chain, dtype)
    run(a, b)  # trace, warm-up (thread pools, page faults)
    flops = chain * 2 * size ** 3

    def probe() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        run(a, b)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return flops / wall / 1e9, flops / max(cpu, 1e-9) / 1e9

    return probe


def _tf_chain(size: int, chain: int, dtype: str):
    """(run, a, b): a tf.function of `chain` matmuls, blocking until done, and its operands."""
    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=dtype)
    b = tf.random.normal((size, size), dtype=dtype) * (1.0 / size)

    @tf.function
    def run(x, y):
        for _ in range(chain):
            x = tf.matmul(x, y)
        return tf.reduce_sum(x)

    return (lambda x, y: run(x, y).numpy()), a, b


def _jax_chain(size: int, chain: int, dtype: str):
    """(run, a, b): a jax.jit of `chain` matmuls, blocking until done, and its operands."""
    import jax

    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (size, size), dtype=dtype)
    b = jax.random.normal(kb, (size, size), dtype=dtype) * (1.0 / size)

    @jax.jit
    def run(x, y):
        for _ in range(chain):
            x = x @ y
        return x.sum()

    return (lambda x, y: run(x, y).block_until_ready()), a, b


def measure_matmul_gflops(size: int = 2048, chain: int = 4, repeats: int = 5,
                          dtype: str = "float32") -> float:
    """Best-of-`repeats` GFLOP/s of `chain` chained (size x size) matmuls (see matmul_probe)."""
    probe = matmul_probe(size, chain, dtype)
    return max(probe()[0] for _ in range(max(1, repeats)))


def time_interleaved(work: Callable[[], object], calls: int,
                     probe: Callable[[], tuple[float, float]] | None,
                     max_seconds: float = 30.0) -> dict[str, list[float]]:
    """Times `calls` calls of a warmed-up `work`, sampling `probe` before each.

    Returns lists "seconds" and "cpu_seconds" (wall and process CPU time per call) and, with a
    probe, "peak" and "peak_per_cpu_s" (its two figures). On a shared machine the fastest call
    and the highest peak sample are the least disturbed wall-clock estimates, and CPU seconds
    show the work's cost whatever share of the cores it got.
    """
    out: dict[str, list[float]] = {"seconds": [], "cpu_seconds": [], "peak": [],
                                   "peak_per_cpu_s": []}
    start = time.perf_counter()
    for _ in range(max(1, calls)):
        if probe is not None:
            wall, per_cpu = probe()
            out["peak"].append(wall)
            out["peak_per_cpu_s"].append(per_cpu)
        t0, c0 = time.perf_counter(), time.process_time()
        work()
        out["seconds"].append(time.perf_counter() - t0)
        out["cpu_seconds"].append(time.process_time() - c0)
        if time.perf_counter() - start > max_seconds:
            break
    return out


def throughput_figures(m: dict[str, list[float]], flops: int, items: int, unit: str,
                       peak_gflops: float = 0.0) -> dict:
    """Rates and fractions of peak from time_interleaved's samples; `items` per call.

    unit names the items (plural, e.g. "pairs"); peak_gflops, when given, replaces the
    sampled wall-clock peak.

    fraction_of_peak: fastest call against the highest peak sample (wall clock);
    fraction_of_peak_cpu: median FLOPs per CPU second against the probe's median per CPU
    second, which the machine's other load disturbs much less.
    """
    times, cpu = m["seconds"], m["cpu_seconds"]
    best, median = min(times), statistics.median(times)
    out = {"calls_timed": len(times), "seconds_best": round(best, 4),
           "seconds_median": round(median, 4), f"{unit}_per_s": round(items / median, 2),
           f"{unit}_per_s_best": round(items / best, 2), "gflops": round(flops / best / 1e9, 1),
           f"cpu_s_per_{unit[:-1]}": round(statistics.median(cpu) / items, 5),
           "cpu_share": round(sum(cpu) / sum(times) / os.cpu_count(), 2)}
    peak = peak_gflops or max(m["peak"])
    out["peak_gflops"] = round(peak, 1)
    out["fraction_of_peak"] = round(flops / best / 1e9 / peak, 3)
    if m["peak_per_cpu_s"]:
        per_cpu = flops / statistics.median(cpu) / 1e9
        out["gflop_per_cpu_s"] = round(per_cpu, 1)
        out["peak_gflop_per_cpu_s"] = round(statistics.median(m["peak_per_cpu_s"]), 1)
        out["fraction_of_peak_cpu"] = round(per_cpu / out["peak_gflop_per_cpu_s"], 3)
    return out
