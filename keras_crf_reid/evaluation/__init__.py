"""Evaluation: the protocol (protocol.py: embed a split's tracklets, score query against gallery),
the ranking metrics CMC and mAP (metrics.py), k-reciprocal re-ranking (rerank.py), the
hand-crafted baselines (baseline.py), results tables (report.py) and figures (plots.py)."""
