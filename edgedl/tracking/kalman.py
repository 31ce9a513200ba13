"""A constant-velocity Kalman filter over boxes, run on all of a tracker's tracks at once.

The state of a track is its box centre, width and height and their velocities, ``[cx, cy, w, h,
vcx, vcy, vw, vh]``; a detection measures the first four. Noise scales with the box's size, as in
ByteTrack and BoT-SORT, so a large near object and a small far one are followed equally well. Every
function takes the stacked states of ``n`` tracks, ``mean [n, 8]`` and ``cov [n, 8, 8]``: one numpy
call per step for the whole frame instead of one per track.
"""

from __future__ import annotations

import numpy as np

#: Position and velocity noise as a share of the box's width or height, per step.
POSITION_NOISE = 1.0 / 20.0
VELOCITY_NOISE = 1.0 / 160.0

_MOTION = np.eye(8) + np.eye(8, k=4)  # one step: position += velocity


def xyxy_to_state(boxes: np.ndarray) -> np.ndarray:
    """``[n, 4]`` x1, y1, x2, y2 → ``[n, 4]`` cx, cy, w, h."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)


def state_to_xyxy(mean: np.ndarray) -> np.ndarray:
    """The boxes ``[n, 4]`` (x1, y1, x2, y2) of states ``[n, 8]``."""
    centre, size = mean[:, :2], mean[:, 2:4]
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def _diag(std: np.ndarray) -> np.ndarray:
    """Diagonal covariance matrices ``[n, k, k]`` from standard deviations ``[n, k]``."""
    out = np.zeros((*std.shape, std.shape[1]))
    idx = np.arange(std.shape[1])
    out[:, idx, idx] = std**2
    return out


def _size_noise(size: np.ndarray, share: float) -> np.ndarray:
    """Standard deviations ``[n, 4]`` for cx, cy, w, h (or their velocities) from the boxes' sizes ``[n, 2]``."""
    return np.concatenate([size, size], axis=1) * share


def start(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks at ``boxes`` (x1, y1, x2, y2), standing still, with velocities yet unknown."""
    measured = xyxy_to_state(boxes)
    mean = np.concatenate([measured, np.zeros_like(measured)], axis=1)
    size = np.maximum(measured[:, 2:], 1.0)
    std = np.concatenate([_size_noise(size, 2 * POSITION_NOISE), _size_noise(size, 10 * VELOCITY_NOISE)], axis=1)
    return mean, _diag(std)


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every track one step ahead."""
    size = np.maximum(mean[:, 2:4], 1.0)
    noise = _diag(np.concatenate([_size_noise(size, POSITION_NOISE), _size_noise(size, VELOCITY_NOISE)], axis=1))
    return mean @ _MOTION.T, _MOTION @ cov @ _MOTION.T + noise


def correct(mean: np.ndarray, cov: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tracks corrected by one measured box each (``boxes [n, 4]``, x1, y1, x2, y2)."""
    measured = xyxy_to_state(boxes)
    size = np.maximum(mean[:, 2:4], 1.0)
    innovation_cov = cov[:, :4, :4] + _diag(_size_noise(size, POSITION_NOISE))
    # gain = P Hᵀ S⁻¹, with H picking the first four state entries; S is symmetric, so solve S Kᵀ = H P.
    gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)
    mean = mean + (gain @ (measured - mean[:, :4])[:, :, None])[:, :, 0]
    cov = cov - gain @ innovation_cov @ gain.transpose(0, 2, 1)
    return mean, cov

