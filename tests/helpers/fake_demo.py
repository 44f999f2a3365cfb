"""Stands in for the demo in tests/measure_readme_test.py: the log lines measure_readme reads
and the files a demo run writes under <workdir>/runs/demo (results, a picture)."""
import json
import os
import sys
import time

run_dir = os.path.join(sys.argv[1], "runs", "demo")
os.makedirs(run_dir)
print("I1201 prid2011.py:58] data/synthetic_100_s0: 100 persons, 200 tracklets, 5565 frames",
      flush=True)
time.sleep(0.3)
print(json.dumps({"dataset": "synthetic", "identities": 100}), flush=True)
with open(os.path.join(run_dir, "results.json"), "w") as f:
    json.dump({"results": {}, "extra": {"train": [
        {"split": 0, "part": "full", "step": 200, "steps_per_s": 2.0},
        {"split": 0, "part": "upper", "step": 200, "steps_per_s": 4.0}]}}, f)
with open(os.path.join(run_dir, "results.md"), "w") as f:
    f.write("| Method | Rank-1 |\n|:---|---:|\n| CRF fusion (upper+lower+full) | 77.0 |\n")
with open(os.path.join(run_dir, "cmc.png"), "wb") as f:
    f.write(b"fake png")
