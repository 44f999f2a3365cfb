"""Installs keras_crf_reid: the CRF (CNN and RNN Fusion) network for video person re-id."""
from setuptools import find_packages, setup

setup(
    name="keras_crf_reid",
    version="0.1.0",
    description="CNN and RNN Fusion (CRF) for video-based person re-identification, in Keras 3",
    packages=find_packages(include=["keras_crf_reid", "keras_crf_reid.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow-cpu==2.21.0",
        "numpy>=1.26",
        # <5: OpenCV 5 removed the HOG people detector (--detector=hog); 4.x serves the rest of
        # the package, DIS flow included (docs/tracking.md, "Built-in detector")
        "opencv-python-headless>=4.8,<5",
        "absl-py>=2.0",
        "scipy>=1.11",
        "tqdm>=4.60",
        "matplotlib>=3.8",
        "pillow>=10",
        "grpcio>=1.60",
        "tensorboard>=2.16",
        "filterpy>=1.4",
    ],
    # tensorflow-serving-api (export warm-up records, gRPC client and development server) is not
    # listed: it declares the full `tensorflow` wheel, which clashes with tensorflow-cpu. Install
    # it with `pip install --no-deps tensorflow-serving-api==2.21.0` (tools/setup_env.sh does);
    # keras_crf_reid.serving.contract.serving_apis() says so when it is missing.
    extras_require={
        "test": ["pytest>=8", "faiss-cpu>=1.8", "motmetrics>=1.4"],
        "ann": ["faiss-cpu>=1.8"],
        # tracking metrics (keras_crf_reid.tracking.evaluate); keras_crf_reid.tracking.metrics shims the
        # np.asfarray that py-motmetrics 1.4 calls and NumPy 2 removed
        "track": ["motmetrics>=1.4"],
        # Keras 3's JAX backend (keras_crf_reid.training.jax_step, tools/bench_backends.py); on a
        # GPU machine install jax's CUDA wheels instead of jax[cpu].
        "jax": ["jax[cpu]>=0.10"],
    },
)
