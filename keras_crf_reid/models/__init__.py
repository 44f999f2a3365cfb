"""The networks and how they are built: the CRF network (network.py), the fusion of the body-part
models (fusion.py), test-time augmentation (tta.py), building untrained models and restoring
trained ones (factory.py), and FLOP counts (flops.py)."""
