"""A pipeline run over a whole padded batch at once, as ``PhoenixLandmarks.__getitems__`` runs it.

Item by item, FillGaps, Normalize, Mirror, RandomAffine and TimeWarp cost ~60 small NumPy and torch calls a sample:
their cost is the calls, not the arithmetic (arrays of ~45,000 values). Over a batch each call does the
work of B samples. A step class that defines ``batch_call(batch)`` itself (not inherited: a subclass that
changes a step runs item by item, as it says) runs here; a pipeline with any other step runs item by item.
Such a step must treat the points alike, left and right (see ``prepare``).

The result is the same items as the steps item by item: the same draws (with a seed: from seed, epoch,
sample id and step, as ``RandomTransform`` seeds them), the same masks, sizes and keys; the landmarks
equal up to float32 rounding (the geometric maps are composed per frame and applied in one matrix
product; tests/test_transform_batch.py holds the two paths side by side).
"""
from __future__ import annotations

import math
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..record import selection
from .base import Item


class Batch:
    """A batch as the steps see it.

    ``landmarks`` float32 [B, T, R, K]: planar (each frame's x, y and z of its K points as three rows: a
    frame's map is then one [3, 3] x [3, K] product, and a frame one contiguous row); as read, R = 4: a
    fourth row of 1 where the point has a value and 0 where not, so that the first map is one [3, 4] x
    [4, K] product with its offset added to found points only (``apply_pending``); R = 3 after it.
    ``valid`` and ``imputed`` bool [B, T, K] (False in the padding, after ``sizes[b]`` frames; ``imputed``:
    filled in by FillGaps), the fourth row their ``|``; ``visibility`` float32 [B, T, P]: the confidence
    of the pose's points (``pose``: which of the K they are). The confidence of every other point is its
    part's presence, 1 or 0: ``valid``, whatever these steps do (they move it with its point, or
    interpolate it where the point has a value in both frames: 1 again), so it is not carried, unless
    TimeWarp interpolates between a found and a filled-in value: then ``confidence`` float32 [B, T, K]
    holds every point's (None before).
    ``sizes`` int64 [B], ``items``: each sample's other keys (``id``, ``coords``, ``point_ids``, ...) as an
    item holds them, every sample with the same points. Points without a value and the padding are zero at
    every step's end (the maps add their offset to found points only: no pass to zero them again).
    ``pending``: the geometric maps not applied yet.
    """

    def __init__(self, sizes: Sequence[int], num_points: int, columns: np.ndarray, items: List[Item]) -> None:
        """Arrays for ``sizes`` frames of the layout points ``columns`` of a layout of ``num_points`` (padding
        zeroed; ``put`` fills the rest)."""
        self.work = workspace()
        self.columns, self._planar = columns, planar_columns(columns)
        self._selection = self._swapped_selection = selection(num_points, columns)
        self.pose = self._selection.pose
        points = len(columns)
        self.sizes = np.array(sizes, dtype=np.int64)
        shape = (len(self.sizes), int(self.sizes.max(initial=0)), points)
        self.landmarks = self.array("landmarks", (shape[0], shape[1], 4, points), np.float32)
        self.visibility = self.array("visibility", shape[:2] + (np.arange(points)[self.pose].size,), np.float32)
        self.valid = self.array("valid", shape, np.bool_)
        self.imputed = self.array("imputed", shape, np.bool_)
        self.imputed.fill(False)
        self.confidence: Optional[np.ndarray] = None
        for b, size in enumerate(self.sizes.tolist()):
            for values in (self.landmarks, self.visibility, self.valid):
                values[b, size:] = 0
        self.items = items
        self.pending: Optional[BatchMap] = None
        self.drawn: Dict[int, np.ndarray] = {}  # a step's draws made before the read, by id(step)
        self.swapped = np.zeros(len(self.sizes), dtype=bool)  # samples read with their points swapped
        self._swapped_planar = self._planar

    def swap_points(self, samples: np.ndarray, columns: np.ndarray) -> None:
        """Read the ``samples`` (bool [B]) with their points swapped: column k takes the values of column
        ``columns[k]`` (a swap: ``columns[columns]`` is every column), as Mirror swaps them."""
        self.swapped ^= samples
        self._swapped_selection = selection(self._selection.num_points, self.columns[columns])
        self._swapped_planar = planar_columns(self._swapped_selection.columns)

    def put(self, b: int, arrays: Dict[str, np.ndarray]) -> None:
        """Sample ``b``'s frames from a record's arrays (``record``'s layout)."""
        size, points = arrays["presence"].shape[0], len(self.columns)
        selection, planar = ((self._swapped_selection, self._swapped_planar) if self.swapped[b]
                             else (self._selection, self._planar))
        selection.fill_found(arrays, self.valid[b, :size])
        selection.visibility(arrays, out=self.visibility[b, :size])
        stored = self.work.array("stored", (size, 3, points), np.float16)
        np.take(arrays["landmarks"].reshape(size, -1), planar, axis=1, out=stored.reshape(size, -1), mode="clip")
        # float16 -> float32 (torch: 5x numpy's conversion), then points without a value zero (a multiply by
        # the mask as float32, the fourth row: 2.5x torch's by a bool mask, 7x its masked_fill_)
        landmarks = self.landmarks[b, :size]
        np.copyto(landmarks[:, 3], self.valid[b, :size])
        values = torch.from_numpy(landmarks)
        values[:, :3].copy_(torch.from_numpy(stored)).mul_(values[:, 3:])

    def taken(self, name: str, values: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``values[index]`` (along the first axis) in the workspace's ``name``."""
        # mode="clip": with "raise" np.take writes through a buffer of its own when given ``out``
        return np.take(values, index, axis=0, out=self.work.array(name, index.shape + values.shape[1:], values.dtype),
                       mode="clip")

    def array(self, role: str, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """Workspace memory for a new value of ``role`` ("landmarks", ...): not the memory of its current one."""
        current = getattr(self, role, None)
        for name in (role, role + "'"):
            values = self.work.array(name, shape, dtype)
            if current is None or not np.may_share_memory(values, current):
                return values
        raise AssertionError("both of a role's arrays hold its current value")

    @property
    def frames(self) -> int:
        return int(self.landmarks.shape[1])

    def scale_shift(self, scale: np.ndarray, shift: np.ndarray) -> None:
        """Then p -> scale * p + shift (``BatchMap.scale_shift``), applied later."""
        if self.pending is None:
            self.pending = BatchMap(len(self.items))
        if not self.pending.scale_shift(scale, shift):
            self.apply_pending()
            self.scale_shift(scale, shift)

    def linear(self, matrix: np.ndarray, offset: np.ndarray) -> None:
        """Then p -> matrix p + offset (``BatchMap.linear``), applied later."""
        if self.pending is None:
            self.pending = BatchMap(len(self.items))
        self.pending.linear(matrix, offset)

    def apply_pending(self) -> None:
        """The pending maps applied to the landmarks: p' = A p + a per frame (one matrix product), the offset
        added to points with a value only (the others stay zero)."""
        if self.pending is None:
            return
        maps, self.pending = self.pending.per_frame(self.frames), None
        shape = self.landmarks.shape[:2] + (3, self.landmarks.shape[3])
        moved = self.array("landmarks", shape, np.float32)
        if self.landmarks.shape[2] == 4:  # [A | a] x [p; found]
            np.matmul(maps, self.landmarks, out=moved)
        else:
            np.matmul(maps[..., :3], self.landmarks, out=moved)
            found = self.work.array("found", self.valid.shape, np.float32)
            np.copyto(found, self.has_value())
            torch.from_numpy(moved).addcmul_(torch.from_numpy(maps[..., 3:]), torch.from_numpy(found).unsqueeze(2))
        self.landmarks = moved

    def has_value(self) -> np.ndarray:
        """bool [B, T, K]: found or filled in."""
        return self.valid | self.imputed if self.imputed.any() else self.valid

    def full_confidence(self) -> np.ndarray:
        """``confidence`` of every point, made from ``valid`` and ``visibility`` where not kept yet."""
        if self.confidence is None:
            self.confidence = self.array("confidence", self.valid.shape, np.float32)
            np.copyto(self.confidence, self.valid)
            self.confidence[..., self.pose] = self.visibility
        return self.confidence

    def xyz(self) -> np.ndarray:
        """The landmarks' x, y and z rows (a view: without the fourth row)."""
        return self.landmarks[:, :, :3]

    def finish(self, landmarks: torch.Tensor, confidence: torch.Tensor, valid: torch.Tensor,
               imputed: torch.Tensor) -> None:
        """Write the result into a padded batch's tensors of the item's shapes (``landmarks`` [B, T, K, 3] of
        any float dtype)."""
        self.apply_pending()
        landmarks.copy_(torch.from_numpy(self.xyz()).permute(0, 1, 3, 2))
        valid.numpy()[...] = self.valid
        imputed.numpy()[...] = self.imputed
        if self.confidence is not None:
            confidence.numpy()[...] = self.confidence
        else:
            confidence.numpy()[...] = self.valid
            confidence.numpy()[..., self.pose] = self.visibility


class BatchMap:
    """The affine maps of x, y, z the geometric steps gave so far, as ``AffineMap`` with a batch axis:
    p' = M (s * p + c) + o with the scale s and shift c per frame ([B, T, 3]) or per sample ([B, 1, 3]),
    the matrix M ([B, 3, 3]) and offset o ([B, 3]) per sample; composed in float64."""

    def __init__(self, batch: int) -> None:
        self.scale, self.shift = np.ones((batch, 1, 3)), np.zeros((batch, 1, 3))
        self.matrix: Optional[np.ndarray] = None
        self.offset = np.zeros((batch, 3))

    def scale_shift(self, scale: np.ndarray, shift: np.ndarray) -> bool:
        """Then p -> scale * p + shift, both [B, T, 3] or [B, 1, 3]; False (nothing done) for a scale per
        frame after a matrix: apply this map first."""
        if self.matrix is None:
            self.scale, self.shift = self.scale * scale, self.shift * scale + shift
        elif scale.shape[1] == 1 and shift.shape[1] == 1:  # per sample: into the matrix's rows
            self.matrix = scale[:, 0, :, None] * self.matrix
            self.offset = scale[:, 0] * self.offset + shift[:, 0]
        else:
            return False
        return True

    def linear(self, matrix: np.ndarray, offset: np.ndarray) -> None:
        """Then p -> matrix p + offset, ``matrix`` [B, 3, 3] and ``offset`` [B, 3] (per sample)."""
        self.offset = offset if self.matrix is None else np.einsum("bij,bj->bi", matrix, self.offset) + offset
        self.matrix = matrix if self.matrix is None else matrix @ self.matrix

    def per_frame(self, frames: int) -> np.ndarray:
        """float32 [B, T, 3, 4]: each frame's map as [A | a], p' = A p + a."""
        # in torch: its broadcasts over these small axes are ~3x NumPy's
        batch = len(self.offset)
        matrix = torch.eye(3, dtype=torch.float64).expand(batch, 3, 3) if self.matrix is None else torch.from_numpy(
            self.matrix)
        scale = torch.from_numpy(self.scale).expand(batch, frames, 3)
        shift = torch.from_numpy(self.shift).expand(batch, frames, 3)
        out = torch.empty(batch, frames, 3, 4)
        out[..., :3] = matrix[:, None] * scale[:, :, None, :]  # M diag(s)
        out[..., 3] = torch.matmul(shift, matrix.transpose(1, 2)) + torch.from_numpy(self.offset)[:, None]  # M c + o
        return out.numpy()


def batchable(steps: Iterable[Any]) -> bool:
    """Every step's class defines ``batch_call`` itself, and the step treats left and right alike
    (``sides_alike``, where a step's settings decide it: see ``prepare``)."""
    return all("batch_call" in type(step).__dict__ and getattr(step, "sides_alike", True) for step in steps)


def prepare(steps: Sequence[Any], batch: Batch) -> None:
    """Before the read: the steps that swap points (Mirror's ``swap_before_read``) draw, and the read itself
    swaps the points (no pass over the batch). Right whatever the order of the steps: every step that runs
    over a batch treats the points alike, left and right (Normalize: its two shoulders), so it gives the
    same result on points swapped before it."""
    for step in steps:
        swap = getattr(step, "swap_before_read", None)
        if swap is not None:
            swap(batch)


def run(steps: Sequence[Any], batch: Batch) -> Batch:
    """``batch`` through ``steps`` (each ``batch_call(batch)``), the maps still pending not applied."""
    for step in steps:
        step.batch_call(batch)
    return batch


class Workspace:
    """Arrays kept from batch to batch (one set per thread): a new array's pages each cost a fault on their
    first write, for batch-sized arrays more than the arithmetic on them (2026-12-05: the typical pipeline
    0.90 ms a sample with new memory each batch, 0.73 without). Arrays past ``LIMIT`` bytes in all are not
    kept."""

    LIMIT = 160 << 20

    def __init__(self) -> None:
        self._kept: Dict[str, np.ndarray] = {}

    def array(self, name: str, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """Uninitialised memory for ``shape`` and ``dtype``, the same as ``name``'s last time where it fits."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        kept = self._kept.get(name)
        if kept is None or kept.nbytes < nbytes:
            self._kept.pop(name, None)
            kept = np.empty(nbytes + nbytes // 8, np.uint8)  # room for a slightly longer batch next time
            if sum(a.nbytes for a in self._kept.values()) + kept.nbytes <= self.LIMIT:
                self._kept[name] = kept
        return kept[:nbytes].view(dtype).reshape(shape)


_LOCAL = threading.local()


def workspace() -> Workspace:
    """This thread's ``Workspace``."""
    work = getattr(_LOCAL, "work", None)
    if work is None:
        work = _LOCAL.work = Workspace()
    return work


def planar_columns(columns: np.ndarray) -> np.ndarray:
    """Where a stored frame ([N, 3] values, flat) holds the x of each of ``columns``, then their y, their z."""
    return (np.arange(3)[:, None] + 3 * columns[None, :]).ravel()


def rows(values: np.ndarray) -> np.ndarray:
    """[B, T, ...] as [B * T, ...] (a view)."""
    return values.reshape((-1,) + values.shape[2:])
