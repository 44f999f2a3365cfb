"""How much one person's detected box changes shape from one frame to the next: the spread that
`--merged_aspect` must stay above (a box covering two people is much wider than either).

For each ground-truth person and pair of consecutive frames where one detection matches them
alone (IoU >= 0.5 with them, < 0.3 with every other person), the ratio of the two detections'
aspect (w / h); prints one JSON object of its percentiles per sequence.

    .venv/bin/python tools/detection_aspect.py [--sequences=PETS09-S2L1,TUD-Campus,TUD-Stadtmitte]
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_crf_reid.configs.tracker import MOT15_VIDEOS  # noqa: E402

flags.DEFINE_string("mot_root", "../shared/realdata/mot15", "Folder of the MOT15 sequences.")
flags.DEFINE_list("sequences", list(MOT15_VIDEOS), "Sequences measured.")
flags.DEFINE_string("detections", "det/det.txt", "Detection file, relative to a sequence.")
FLAGS = flags.FLAGS
PERCENTILES = (50, 90, 95, 99, 99.9)


def aspect_changes(dets, gt):
    """Ratios (N,) of a person's detection aspect to their detection's aspect a frame before."""
    import numpy as np

    from keras_crf_reid.tracking.tracker import iou_matrix

    previous: dict[int, float] = {}
    out = []
    for f in np.unique(gt.frame):
        boxes, people = gt.boxes[gt.frame == f], gt.id[gt.frame == f]
        found = dets.boxes[dets.frame == f]
        current = {}
        if len(found):
            iou = iou_matrix(boxes, found)
            for k, person in enumerate(people):
                j = int(iou[k].argmax())
                if iou[k, j] >= 0.5 and (iou[:, j] >= 0.3).sum() == 1:
                    current[int(person)] = found[j, 2] / found[j, 3]
        out += [a / previous[p] for p, a in current.items() if p in previous]
        previous = current
    return np.asarray(out)


def main(argv):
    del argv
    import numpy as np

    from keras_crf_reid.tracking.detections import read_mot

    result = {}
    for seq in FLAGS.sequences:
        root = os.path.join(FLAGS.mot_root, seq)
        ratios = aspect_changes(read_mot(os.path.join(root, FLAGS.detections)),
                                read_mot(os.path.join(root, "gt", "gt.txt")))
        result[seq] = {"pairs": len(ratios), **{
            f"p{p:g}": round(float(np.percentile(ratios, p)), 3) for p in PERCENTILES}}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
