"""The rows of a results table, each a (config, entry) over the same per-split runner.

A plain run has one config and a row per trained part (plus the fusion when all three parts
are trained). An ablation (`--rows=cnn,rnn,cnn_rnn,fusion`, the paper's Table 3) is a list of
configs that differ only in the model variant and parts, each in its own sub-folder of the run:

    cnn, rnn, cnn_rnn  a full-body model of that variant: <run>/<variant>/split_k/full
    fusion             cnn_rnn part models on full, upper and lower plus the learned W_u, W_l,
                       W_g, sharing <run>/cnn_rnn (its full-body model is row cnn_rnn's)
"""
from __future__ import annotations

import dataclasses

from keras_crf_reid.configs.experiment import ExperimentConfig, replace
from keras_crf_reid.configs.run import ROWS
from keras_crf_reid.evaluation.baseline import TITLES as BASELINE_TITLES
from keras_crf_reid.geometry import PARTS
from keras_crf_reid.models.factory import FUSION
from keras_crf_reid.runner.split import BASELINE, entries_of

ROW_TITLES = {"cnn": "CNN", "rnn": "RNN", "cnn_rnn": "CNN+RNN", "fusion": "Fusion (upper+lower+full)"}
PART_TITLES = {"upper": "CNN+RNN, upper half only", "lower": "CNN+RNN, lower half only"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the results table: `entry` of `config`'s per-split results."""

    title: str
    config: ExperimentConfig
    entry: str


def variant_config(cfg: ExperimentConfig, variant: str, parts: tuple[str, ...]) -> ExperimentConfig:
    """The config of one ablation variant: run folder <run>/<variant>, nothing exported."""
    return replace(cfg, model={"variant": variant}, parts=parts,
                   run={"output_dir": cfg.run_dir, "name": variant, "export": False})


def table_rows(cfg: ExperimentConfig) -> list[Row]:
    """The rows `cfg` asks for, in table order (the baseline last, with --baseline)."""
    if not cfg.run.rows:
        rows = [Row(f"CRF {cfg.model.variant} ({p})", cfg, p) for p in cfg.parts]
        if cfg.fuses:
            rows.append(Row("CRF fusion (upper+lower+full)", cfg, FUSION))
    else:
        rows = []
        for r in (r for r in ROWS if r in cfg.run.rows):
            if r == FUSION:
                vcfg = variant_config(cfg, "cnn_rnn", PARTS)
                rows += [Row(PART_TITLES[p], vcfg, p) for p in ("upper", "lower")]
                rows.append(Row(ROW_TITLES[r], vcfg, FUSION))
            else:
                rows.append(Row(ROW_TITLES[r], variant_config(cfg, r, ("full",)), "full"))
    if cfg.eval.baseline:
        rows.append(Row(BASELINE_TITLES[cfg.eval.baseline_kind], rows[0].config, BASELINE))
    return rows


def split_jobs(rows: list[Row]) -> list[tuple[ExperimentConfig, list[str]]]:
    """(config, entries) per run folder: what one split computes, each entry once."""
    jobs: dict[str, tuple[ExperimentConfig, list[str]]] = {}
    for row in rows:
        cfg, entries = jobs.get(row.config.run_dir, (row.config, []))
        if len(row.config.parts) > len(cfg.parts):
            cfg = row.config  # the config that trains the most parts (fusion row) runs the folder
        needed = entries_of(row.config) if row.entry == FUSION else [row.entry]
        jobs[row.config.run_dir] = (cfg, entries + [e for e in needed if e not in entries])
    return list(jobs.values())
