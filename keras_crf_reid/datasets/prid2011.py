"""PRID-2011 multi-shot and any folder in its layout: cam_a|cam_b/person_XXXX/NNNN.png.

Two protocols, both probe = cam_a (camid 0), gallery = cam_b (camid 1), random 50/50 splits:
  prid2011      the paper's (McLaughlin et al. and the CRF paper): the 200 persons seen by both
                cameras (ids 1..200), whatever their length; 100 for training, 100 for testing.
  prid2011_178  the one of Wang et al. ECCV'14, followed by DVR and torchreid: of those, the
                persons with at least 21 frames in each camera (178 persons on the real data).
"""
from __future__ import annotations

import logging
import os

from keras_crf_reid.datasets.base import (DatasetError, ReidDataset, pair_cameras, require_dir,
                                          scan_camera)

PERSON_PATTERN = r"person_(\d+)"
CAMERAS = ("cam_a", "cam_b")

log = logging.getLogger(__name__)


def find_layout_dir(root: str) -> str:
    """The folder holding cam_a/ and cam_b/: `root` itself, root/multi_shot or root/prid_2011/multi_shot."""
    require_dir(root, "dataset root")
    candidates = [root, os.path.join(root, "multi_shot"), os.path.join(root, "prid_2011", "multi_shot")]
    for folder in candidates:
        present = [c for c in CAMERAS if os.path.isdir(os.path.join(folder, c))]
        if len(present) == 2:
            return folder
        if present:
            missing = os.path.join(folder, next(c for c in CAMERAS if c not in present))
            raise DatasetError(f"{missing}: camera folder does not exist (found "
                               f"{os.path.join(folder, present[0])}; PRID layout needs cam_a and cam_b)")
    raise DatasetError(f"{root}: not a PRID-2011 layout folder: expected cam_a/ and cam_b/ with "
                       f"person_XXXX/ folders, directly or under multi_shot/ or prid_2011/multi_shot/")


def load_prid_layout(root: str, min_len: int = 1, max_person_id: int | None = None,
                     name: str = "prid_layout") -> ReidDataset:
    """Reads any folder in the PRID layout (real PRID-2011, synthetic data, MOT tracklets).

    Persons seen by one camera only, shorter than `min_len` frames in either camera, or with
    empty folders are dropped and recorded in `dataset.skipped`; stray files are ignored with a
    warning. Raises DatasetError naming the folder when the layout is wrong or no person is left.
    """
    if min_len < 1:
        raise ValueError(f"min_len must be >= 1, got {min_len}")
    layout = os.path.abspath(find_layout_dir(root))
    skipped: dict[str, str] = {}
    cameras = []
    for camid, cam in enumerate(CAMERAS):
        cam_dir = os.path.join(layout, cam)
        cameras.append((camid, cam_dir, scan_camera(cam_dir, PERSON_PATTERN, skipped, max_person_id)))
    tracklets = pair_cameras(layout, cameras, min_len, skipped)
    dataset = ReidDataset(name=name, root=layout, tracklets=tracklets, probe_cam=0, gallery_cam=1,
                          skipped=skipped)
    log.info("%s: %d persons, %d tracklets, %d frames (%d entries skipped)", layout,
             len(dataset.pids), len(tracklets), dataset.stats()["frames"], len(skipped))
    return dataset


PAPER_PERSONS = 200  # ids 1..200 are the persons seen by both cameras
MIN_LEN_178 = 21  # the DVR / torchreid minimum length (178 persons)


def load_prid2011(root: str, min_len: int = 1, max_person_id: int = PAPER_PERSONS) -> ReidDataset:
    """PRID-2011 multi-shot under the paper's protocol: the 200 persons seen by both cameras.

    `root` may be the prid_2011 folder, its multi_shot folder, or a folder holding cam_a/cam_b.
    """
    return load_prid_layout(root, min_len=min_len, max_person_id=max_person_id, name="prid2011")


def load_prid2011_178(root: str, min_len: int = MIN_LEN_178,
                      max_person_id: int = PAPER_PERSONS) -> ReidDataset:
    """PRID-2011 multi-shot under the DVR / torchreid protocol: >= 21 frames, 178 persons."""
    return load_prid_layout(root, min_len=min_len, max_person_id=max_person_id, name="prid2011_178")
