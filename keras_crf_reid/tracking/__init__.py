"""Multi-object tracking with the re-id model as appearance (DeepSORT-style): MOTChallenge
detection files (detections.py), a constant-velocity Kalman filter on boxes (kalman.py), the
per-frame assignment (tracker.py) and video reading / cropping (video.py)."""
