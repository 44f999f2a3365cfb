"""The built-in detector: clear errors for an unknown name and for an OpenCV without HOG, and
the window-to-person box shrink."""
import cv2
import numpy as np
import pytest

from keras_crf_reid.tracking import detector


def test_unknown_detector_is_named():
    with pytest.raises(detector.DetectorError, match="--detector=yolo: unknown detector"):
        detector.detect_video("any.avi", "yolo")


def test_hog_needs_opencv_4_and_says_so(monkeypatch):
    monkeypatch.delattr(cv2, "HOGDescriptor", raising=False)
    with pytest.raises(detector.DetectorError, match=r"opencv-python-headless<5.*--detections"):
        detector.detect_video("any.avi", "hog")


def test_windows_shrink_to_the_person():
    box = detector.shrink(np.array([[0.0, 0.0, 64.0, 128.0]]))
    assert box.tolist() == [[16.0, 16.0, 32.0, 96.0]]


@pytest.mark.skipif(not hasattr(cv2, "HOGDescriptor"), reason="OpenCV 5 has no HOG detector")
def test_hog_finds_nothing_on_a_blank_frame():
    boxes, scores = detector.hog_boxes(detector._hog(), np.full((240, 320, 3), 128, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)
