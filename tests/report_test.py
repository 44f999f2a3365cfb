"""Aggregation over splits, the Markdown results table, and the run report files."""
import json
import os

import numpy as np
import pytest

from keras_crf_reid.datasets.base import Split
from keras_crf_reid.evaluation import report

SPLITS = [
    {"rank1": 70.0, "rank5": 85.0, "rank10": 90.0, "rank20": 95.0, "mAP": 50.0, "note": "a"},
    {"rank1": 72.0, "rank5": 86.0, "rank10": 91.0, "rank20": 96.0, "mAP": 52.5, "note": "b"},
    {"rank1": 74.0, "rank5": 87.0, "rank10": 92.0, "rank20": 97.0, "mAP": 55.0, "note": "c"},
]


def test_aggregate_mean_and_sample_std():
    agg = report.aggregate(SPLITS)
    assert agg["num_splits"] == 3
    assert set(agg) == {"rank1", "rank5", "rank10", "rank20", "mAP", "num_splits"}
    # rank1: 70, 72, 74 -> mean 72, sample std sqrt((4 + 0 + 4) / 2) = 2.
    assert agg["rank1"] == pytest.approx({"mean": 72.0, "std": 2.0})
    # mAP: 50, 52.5, 55 -> mean 52.5, sample std 2.5.
    assert agg["mAP"] == pytest.approx({"mean": 52.5, "std": 2.5})
    assert agg["rank5"]["std"] == pytest.approx(np.std([85, 86, 87], ddof=1))


def test_aggregate_single_split_has_zero_std():
    agg = report.aggregate([{"rank1": 61.0, "mAP": np.float32(40.5)}])
    assert agg == {"rank1": {"mean": 61.0, "std": 0.0}, "mAP": {"mean": 40.5, "std": 0.0},
                   "num_splits": 1}


@pytest.mark.parametrize("splits, message", [
    ([], "at least one split"),
    ([{"rank1": 1.0}, {"mAP": 2.0}], "no numeric value"),
    ([{"rank1": 1.0}, {"rank1": "x"}], "no numeric value"),
    ([{"rank1": float("nan")}], "not finite"),
])
def test_aggregate_rejects_bad_input(splits, message):
    with pytest.raises(ValueError, match=message):
        report.aggregate(splits)


def test_results_table_layout():
    table = report.results_table(
        {"CRF | ours": report.aggregate(SPLITS),
         "one split": report.aggregate([{"rank1": 60.04, "rank5": 80.0, "rank10": 85.25,
                                         "rank20": 90.0, "mAP": 40.0}]),
         "plain": {"rank1": 12.34, "mAP": 5.0}},
        "MARS")
    lines = table.strip().split("\n")
    assert lines[0] == "### MARS"
    assert lines[2] == "| Method | Rank-1 | Rank-5 | Rank-10 | Rank-20 | mAP |"
    assert lines[3] == "|:---|---:|---:|---:|---:|---:|"
    assert lines[4] == ("| CRF \\| ours | 72.0 ± 2.0 | 86.0 ± 1.0 | 91.0 ± 1.0 | 96.0 ± 1.0 "
                        "| 52.5 ± 2.5 |")
    assert lines[5] == "| one split | 60.0 | 80.0 | 85.3 | 90.0 | 40.0 |"
    assert lines[6] == "| plain | 12.3 | - | - | - | 5.0 |"


def test_write_run_report(tmp_path):
    splits_file = tmp_path / "splits.json"
    splits_file.write_text(json.dumps({"splits": [Split((0,), (1,), (2,)).to_dict()]}))
    out = tmp_path / "run"
    flags = {"dataset": "PRID-2011", "lr": np.float32(0.5), "steps": np.int64(3),
             "ranks": (1, 5)}
    per_split = {"CRF": SPLITS, "CNN": SPLITS[:1]}
    paths = report.write_run_report(str(out), flags, str(splits_file), per_split,
                                    extra={"seconds": 1.5})
    assert set(paths) == {"flags", "per_split", "results", "markdown"}
    for p in paths.values():
        assert os.path.isfile(p) and os.path.getsize(p) > 0
    assert sorted(os.listdir(out)) == ["flags.json", "per_split.json", "results.json",
                                       "results.md"]  # no temporary files left behind
    assert json.loads((out / "flags.json").read_text()) == {
        "dataset": "PRID-2011", "lr": 0.5, "steps": 3, "ranks": [1, 5]}
    assert json.loads((out / "per_split.json").read_text()) == per_split
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["CRF"]["rank1"] == pytest.approx({"mean": 72.0, "std": 2.0})
    assert results["results"]["CRF"]["num_splits"] == 3
    assert results["results"]["CNN"]["mAP"] == {"mean": 50.0, "std": 0.0}
    assert results["splits"]["path"] == str(splits_file)
    assert len(results["splits"]["sha256"]) == 64
    assert results["extra"] == {"seconds": 1.5}
    md = (out / "results.md").read_text()
    assert md.startswith("### Results on PRID-2011\n")
    assert "| CRF | 72.0 ± 2.0 |" in md and "| CNN | 70.0 | 85.0 |" in md


def test_write_run_report_with_split_objects_and_overwrite(tmp_path):
    splits = [Split((0, 1), (2,), (3, 4))]
    report.write_run_report(str(tmp_path), {}, splits, {"A": [{"rank1": 1.0}]}, title="T")
    report.write_run_report(str(tmp_path), {}, splits, {"A": [{"rank1": 2.0}]}, title="T")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["splits"] == [{"train": [0, 1], "query": [2], "gallery": [3, 4]}]
    assert results["results"]["A"]["rank1"]["mean"] == 2.0
    assert (tmp_path / "results.md").read_text().startswith("### T\n")


def test_write_run_report_missing_splits_file_is_recorded(tmp_path):
    report.write_run_report(str(tmp_path), {}, str(tmp_path / "nope.json"),
                            {"A": [{"rank1": 1.0}]})
    results = json.loads((tmp_path / "results.json").read_text())
    assert "cannot read" in results["splits"]["error"]


def test_write_run_report_bad_metrics_write_nothing(tmp_path):
    with pytest.raises(ValueError):
        report.write_run_report(str(tmp_path / "r"), {}, [], {"A": [{"rank1": float("inf")}]})
    assert not (tmp_path / "r").exists()
