"""Constant-velocity Kalman filter on a box's (centre x, centre y, aspect w/h, height), with
noise proportional to the box height (as in DeepSORT), on filterpy's KalmanFilter."""
from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

# chi-square 99.9% quantile with 4 degrees of freedom: the gate on a measurement's squared
# Mahalanobis distance from the predicted box
GATE_CHI2_4DOF = 18.4668
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160


def tlwh_to_xyah(box: np.ndarray) -> np.ndarray:
    x, y, w, h = np.asarray(box, np.float64)
    return np.array([x + w / 2, y + h / 2, w / h, h])


def xyah_to_tlwh(z: np.ndarray) -> np.ndarray:
    cx, cy, a, h = np.asarray(z, np.float64)[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, w, h])


class BoxKalman:
    """Kalman state of one track; boxes in and out as (left, top, width, height)."""

    def __init__(self, box: np.ndarray):
        z = tlwh_to_xyah(box)
        self.kf = KalmanFilter(dim_x=8, dim_z=4)
        self.kf.F = np.eye(8) + np.eye(8, k=4)
        self.kf.H = np.eye(4, 8)
        self.kf.x = np.concatenate([z, np.zeros(4)])[:, None]
        h = z[3]
        std = [2 * STD_POSITION * h, 2 * STD_POSITION * h, 1e-2, 2 * STD_POSITION * h,
               10 * STD_VELOCITY * h, 10 * STD_VELOCITY * h, 1e-5, 10 * STD_VELOCITY * h]
        self.kf.P = np.diag(np.square(std))

    @property
    def height(self) -> float:
        return float(max(self.kf.x[3, 0], 1.0))

    def _measurement_noise(self) -> np.ndarray:
        h = self.height
        return np.diag(np.square([STD_POSITION * h, STD_POSITION * h, 1e-1, STD_POSITION * h]))

    def predict(self) -> None:
        h = self.height
        self.kf.Q = np.diag(np.square([STD_POSITION * h, STD_POSITION * h, 1e-2, STD_POSITION * h,
                                       STD_VELOCITY * h, STD_VELOCITY * h, 1e-5, STD_VELOCITY * h]))
        self.kf.predict()

    def update(self, box: np.ndarray) -> None:
        self.kf.update(tlwh_to_xyah(box)[:, None], R=self._measurement_noise())

    def box(self) -> np.ndarray:
        """The current state as (left, top, width, height)."""
        return xyah_to_tlwh(self.kf.x[:, 0])

    def gating_distance(self, boxes: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances (N,) of boxes (N, 4) from the predicted measurement."""
        if len(boxes) == 0:
            return np.zeros(0)
        s = self.kf.H @ self.kf.P @ self.kf.H.T + self._measurement_noise()
        y = np.stack([tlwh_to_xyah(b) for b in boxes]) - (self.kf.H @ self.kf.x)[:, 0]
        return np.einsum("ni,ij,nj->n", y, np.linalg.inv(s), y)
