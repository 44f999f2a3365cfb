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
        "opencv-python-headless>=4.8",
        "absl-py>=2.0",
        "scipy>=1.11",
        "tqdm>=4.60",
        "matplotlib>=3.8",
        "pillow>=10",
        "grpcio>=1.60",
        "tensorboard>=2.16",
    ],
    extras_require={
        "test": ["pytest>=8", "faiss-cpu>=1.8"],
        "ann": ["faiss-cpu>=1.8"],
    },
)
