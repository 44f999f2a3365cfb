"""The experiment runner: config tree -> data -> per-split training/evaluation -> report -> export.

`config` holds every default (flags only override), `data` reads or generates the dataset and
caches it, `split` trains and scores one split's models (resumable per part), `ablation` turns a
config into the rows of a results table, and `experiment` runs them all and writes the report.
"""
