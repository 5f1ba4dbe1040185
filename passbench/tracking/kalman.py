"""Constant-velocity Kalman filter on boxes ``(x, y, a, h)`` (centre, aspect w/h, height).

Upstream: ``ifzhang/FairMOT`` ``src/lib/tracking_utils/kalman_filter.py`` (itself from
DeepSORT, ``nwojke/deep_sort``). State ``(x, y, a, h, vx, vy, va, vh)``, ``dt = 1`` frame;
process / measurement noise standard deviations scale with the box height ``h`` through the
weights 1/20 (position) and 1/160 (velocity); the aspect ratio gets fixed small noise.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

# 0.95 quantile of the chi-square distribution with N degrees of freedom (MATLAB chi2inv), the
# Mahalanobis gate. Same table as upstream; scipy.stats.chi2.ppf(0.95, N) agrees to 4 digits.
CHI2INV95 = {1: 3.8415, 2: 5.9915, 3: 7.8147, 4: 9.4877, 5: 11.070, 6: 12.592, 7: 14.067, 8: 15.507, 9: 16.919}

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160


class KalmanFilter:
    """DeepSORT/FairMOT box Kalman filter. Means are (8,) or (N, 8); covariances (8, 8) or (N, 8, 8)."""

    ndim = 4

    def __init__(self) -> None:
        self.motion_mat = np.eye(8)
        self.motion_mat[:4, 4:] = np.eye(4)  # x_{t+1} = x_t + v_t (dt = 1)
        self.update_mat = np.eye(4, 8)  # observe (x, y, a, h)
        self.w_pos = STD_WEIGHT_POSITION
        self.w_vel = STD_WEIGHT_VELOCITY

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New track from an unassociated measurement ``(x, y, a, h)``; zero velocity.

        Returns:
            mean (8,), covariance (8, 8) = diag of squared stds
            ``[2wh, 2wh, 1e-2, 2wh, 10vh, 10vh, 1e-5, 10vh]`` (w = 1/20, v = 1/160, h = height).
        """
        m = np.asarray(measurement, dtype=np.float64)
        h = m[3]
        std = [2 * self.w_pos * h, 2 * self.w_pos * h, 1e-2, 2 * self.w_pos * h,
               10 * self.w_vel * h, 10 * self.w_vel * h, 1e-5, 10 * self.w_vel * h]
        return np.r_[m, np.zeros(4)], np.diag(np.square(std))

    def _motion_cov(self, mean: np.ndarray) -> np.ndarray:
        h = mean[..., 3]
        one = np.ones_like(h)
        std = np.stack([self.w_pos * h, self.w_pos * h, 1e-2 * one, self.w_pos * h,
                        self.w_vel * h, self.w_vel * h, 1e-5 * one, self.w_vel * h], -1)
        return np.einsum("...i,ij->...ij", np.square(std), np.eye(8))  # (..., 8, 8) diagonal

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prediction step, batched over leading dims (upstream ``predict`` / ``multi_predict``).

        ``Q`` uses the *previous* height: stds ``[wh, wh, 1e-2, wh, vh, vh, 1e-5, vh]``.
        """
        mean = np.asarray(mean, dtype=np.float64)
        q = self._motion_cov(mean)
        new_mean = mean @ self.motion_mat.T
        new_cov = self.motion_mat @ covariance @ self.motion_mat.T + q
        return new_mean, new_cov

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State -> measurement space, adding ``R = diag([wh, wh, 1e-1, wh]^2)`` (single track)."""
        h = mean[3]
        r = np.diag(np.square([self.w_pos * h, self.w_pos * h, 1e-1, self.w_pos * h]))
        return self.update_mat @ mean, self.update_mat @ covariance @ self.update_mat.T + r

    def update(self, mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correction step with measurement ``(x, y, a, h)`` (single track).

        ``K = P H^T S^-1`` (via Cholesky of ``S``), ``m' = m + K (z - H m)``, ``P' = P - K S K^T``.
        """
        proj_mean, s = self.project(mean, covariance)
        chol = scipy.linalg.cho_factor(s, lower=True, check_finite=False)
        gain = scipy.linalg.cho_solve(chol, (covariance @ self.update_mat.T).T, check_finite=False).T  # (8, 4)
        innovation = np.asarray(measurement, dtype=np.float64) - proj_mean
        return mean + gain @ innovation, covariance - gain @ s @ gain.T

    def gating_distance(self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray,
                        only_position: bool = False) -> np.ndarray:
        """Squared Mahalanobis distance of (M, 4) measurements to one track's projected state.

        Compare with ``CHI2INV95[4]`` (or ``[2]`` with ``only_position``). Returns (M,).
        """
        m, s = self.project(mean, covariance)
        meas = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
        if only_position:
            m, s, meas = m[:2], s[:2, :2], meas[:, :2]
        d = meas - m
        chol = np.linalg.cholesky(s)
        z = scipy.linalg.solve_triangular(chol, d.T, lower=True, check_finite=False)
        return np.sum(z * z, axis=0)
