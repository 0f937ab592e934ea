"""Geometric transforms: Normalize (shoulders), Mirror, RandomAffine. Points without a value stay exactly zero."""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .base import (
    AffineMap,
    Item,
    RandomTransform,
    Transform,
    columns_of,
    ensure_masks,
    layout_points,
    planned_call,
    require_xyz,
)
from .batch import Batch
from .points import POSE_LEFT_SHOULDER, POSE_RIGHT_SHOULDER, mirror_ids, take_points

log = logging.getLogger(__name__)

# Shoulders closer than this (in image-size units; ~0.2 px on PHOENIX's 210x260 frames) are not a scale.
MIN_SHOULDER_WIDTH = 1e-3
IMAGE_CENTRE = 0.5
MODES = ("frame", "clip")
SHOULDERS = np.array([POSE_LEFT_SHOULDER, POSE_RIGHT_SHOULDER])
MIRROR_X = np.array([-1.0, 1.0, 1.0])  # Mirror's scale per axis


def _pixel_scale(image_size: Optional[Sequence[int]]) -> torch.Tensor:
    """Tensor[2]: pixels per unit of x and y (ones when no image size is given)."""
    if image_size is None:
        return torch.ones(2)
    width, height = image_size
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size={image_size!r}; expected (width, height) in pixels, e.g. (210, 260).")
    return torch.tensor([float(width), float(height)])


def _centre(item: Item) -> float:
    """The x (and y) of the picture's centre in the item's coordinates: 0.5 in image units, 0 after Normalize."""
    return 0.0 if item.get("coords") == "shoulders" else IMAGE_CENTRE


class Normalize(Transform):
    """Centre on the shoulder midpoint and scale by the shoulder width (pose points 11 and 12).

    ``mode="frame"``: each frame by its own shoulders; frames where a shoulder has no value (or the
    shoulders are closer than ``MIN_SHOULDER_WIDTH``) use the clip's value, the mean over the frames that
    have both. ``mode="clip"``: every frame by the clip's value. A clip with no usable shoulders at all is
    returned unchanged (still in image coordinates) with a logged warning: never a division by ~0.
    ``image_size=(210, 260)``: measure in pixels, so x and y get the same unit (x and y are normalised to
    width and height, which differ); otherwise in image units. z is divided by the same width (in pixels:
    z is in image-width units, as MediaPipe gives it). Missing points stay zero.
    """

    def __init__(self, mode: str = "frame", image_size: Optional[Tuple[int, int]] = None) -> None:
        if mode not in MODES:
            raise ValueError(f"Normalize mode={mode!r}; expected one of {', '.join(map(repr, MODES))}.")
        self.mode = mode
        self.image_size = None if image_size is None else tuple(image_size)
        self._scale = _pixel_scale(self.image_size)

    def _params(self) -> Dict[str, object]:
        return {"mode": self.mode, **({"image_size": self.image_size} if self.image_size else {})}

    def shoulders(self, item: Item) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Midpoints (float64 [T, 2]), widths ([T]) and usable (bool [T]), in the measuring unit.

        In numpy: these are tiny arrays, on which each torch call costs more than the arithmetic.
        """
        cols = columns_of(item, SHOULDERS, "Normalize").numpy()
        xy = item["landmarks"].numpy()[:, cols, :2]  # [T, 2, 2]
        present = (item["valid"].numpy()[:, cols] | item["imputed"].numpy()[:, cols]).all(axis=1)
        return self._measured(xy[:, 0], xy[:, 1], present)

    def _measured(self, left: np.ndarray, right: np.ndarray, present: np.ndarray
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Midpoints ([..., 2]), widths ([...]) and usable (bool [...]) in the measuring unit, from the two
        shoulders' x, y ([..., 2], image units) and where both have a value (``present``)."""
        pixels = self._scale.numpy().astype(np.float64)
        left, right = left * pixels, right * pixels
        width = np.hypot(*np.moveaxis(left - right, -1, 0))
        usable = present & (width > MIN_SHOULDER_WIDTH * pixels.mean())
        return (left + right) / 2, width, usable  # the mean of the two, as xy.mean(axis=1) gives it

    def _scale_shift(self, mid: np.ndarray, width: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The per-frame map x' = (x * px - mid_x) / w, y' likewise, z' = z * px_x / w, as p' = scale * p -
        shift (both [..., 3]) from the midpoints ([..., 2]) and widths ([...])."""
        pixels = self._scale.numpy().astype(np.float64)
        scale = np.concatenate([pixels, pixels[:1]]) / width[..., None]
        shift = np.concatenate([mid, np.zeros_like(mid[..., :1])], axis=-1) / width[..., None]
        return scale, shift

    __call__ = planned_call

    def plan(self, item: Item, pending: Optional[AffineMap] = None) -> AffineMap:
        """This step's map (the item's coordinates marked as its result), to apply later (``apply_steps``).
        Maps still pending are applied first: the shoulders are measured where the steps before left them."""
        if pending is not None:
            pending.apply(item)
        ensure_masks(item)
        require_xyz(item, "Normalize")
        if item.get("coords") == "shoulders":
            raise ValueError("Normalize applied to an item that is already normalised; use it once.")
        mid, width, usable = self.shoulders(item)
        if not usable.any():
            log.warning("Normalize: sample %r has no frame with both shoulders found; left in image coordinates.",
                        item.get("id"))
            return AffineMap()
        count = np.count_nonzero(usable)  # (sums: np.mean costs ~10 us a call on arrays this small)
        clip_mid, clip_width = mid[usable].sum(axis=0) / count, width[usable].sum() / count
        if self.mode == "clip":
            mid, width = np.broadcast_to(clip_mid, mid.shape), np.broadcast_to(clip_width, width.shape)
        else:
            mid = np.where(usable[:, None], mid, clip_mid)
            width = np.where(usable, width, clip_width)
        scale, shift = self._scale_shift(mid, width)  # [T, 3]: one multiply-add per frame
        item["coords"], item["isotropic"] = "shoulders", self.image_size is not None
        return AffineMap().then(scale, -shift)

    def batch_call(self, batch: Batch) -> None:
        """``plan`` over a batch (``transforms.batch``): every sample's shoulders measured at once."""
        batch.apply_pending()
        if any(item.get("coords") == "shoulders" for item in batch.items):
            raise ValueError("Normalize applied to an item that is already normalised; use it once.")
        left, right = columns_of(batch.items[0], SHOULDERS, "Normalize").tolist()
        has = batch.has_value()  # found or filled in, as ``shoulders`` counts them
        mid, width, usable = self._measured(batch.landmarks[:, :, :2, left], batch.landmarks[:, :, :2, right],
                                            has[:, :, left] & has[:, :, right])  # [B, T, 2], [B, T]; padding unusable
        count = np.count_nonzero(usable, axis=1)  # [B]
        found = count > 0
        for item in (item for item, ok in zip(batch.items, found) if not ok):
            log.warning("Normalize: sample %r has no frame with both shoulders found; left in image coordinates.",
                        item.get("id"))
        count = np.maximum(count, 1)
        clip_mid = np.where(usable[..., None], mid, 0.0).sum(axis=1) / count[:, None]  # [B, 2]
        clip_width = np.where(usable, width, 0.0).sum(axis=1) / count  # [B]
        if self.mode == "clip":
            usable = np.zeros_like(usable)
        mid = np.where(usable[..., None], mid, clip_mid[:, None])
        width = np.where(usable, width, np.where(found, clip_width, 1.0)[:, None])
        scale, shift = self._scale_shift(mid, width)  # [B, T, 3]
        scale[~found], shift[~found] = 1.0, 0.0
        batch.scale_shift(scale, -shift)
        for item in (item for item, ok in zip(batch.items, found) if ok):
            item["coords"], item["isotropic"] = "shoulders", self.image_size is not None


class Mirror(RandomTransform):
    """With probability ``p``, mirror the picture horizontally: x -> 2c - x (c = 0.5 in image coordinates,
    0 after Normalize), with the hands swapped, the pose's left/right points swapped and the face mesh
    re-indexed by its mirror map (``points.FACE_MIRROR_PAIRS``). Masks and confidence move with their
    points; missing points stay zero. Sets ``item["mirrored"]``.
    """

    def __init__(self, p: float = 0.5, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Mirror p={p!r}; expected a probability in [0, 1].")
        self.p = p

    def _params(self) -> Dict[str, object]:
        return {"p": self.p, **super()._params()}

    __call__ = planned_call

    def plan(self, item: Item, pending: Optional[AffineMap] = None) -> AffineMap:
        """Swaps the points now (the same map for every point of a frame: it commutes with ``pending``);
        the flip is added to ``pending`` (``apply_steps``)."""
        pending = pending if pending is not None else AffineMap()
        ensure_masks(item)
        require_xyz(item, "Mirror")
        if float(torch.rand((), generator=self.generator(item))) >= self.p:
            item.setdefault("mirrored", False)
            return pending
        take_points(item, self.partner_columns(item))
        item["mirrored"] = not item.get("mirrored", False)
        centre = _centre(item)
        return pending.then(MIRROR_X, np.array([2 * centre, 0.0, 0.0]))  # x -> 2c - x

    def batch_call(self, batch: Batch) -> None:
        """``plan`` over a batch (``transforms.batch``): the points were swapped by the read
        (``swap_before_read``); the flip is added to the batch's pending map."""
        flips = batch.drawn.pop(id(self))
        for item, flip in zip(batch.items, flips):
            item["mirrored"] = not item.get("mirrored", False) if flip else item.get("mirrored", False)
        if flips.any():
            scale = np.where(flips[:, None], MIRROR_X, 1.0)[:, None, :]  # [B, 1, 3]
            shift = np.zeros_like(scale)
            shift[:, 0, 0] = np.where(flips, [2 * _centre(item) for item in batch.items], 0.0)  # x -> 2c - x
            batch.scale_shift(scale, shift)

    def swap_before_read(self, batch: Batch) -> None:
        """This step's draws (which samples it mirrors), and their swaps of points, made by the read itself
        (``Batch.swap_points``)."""
        flips = np.array([float(torch.rand((), generator=self.generator(item))) < self.p for item in batch.items],
                         dtype=bool)
        if flips.any():
            batch.swap_points(flips, self.partner_columns(batch.items[0]).numpy())
        batch.drawn[id(self)] = flips

    @staticmethod
    def partner_columns(item: Item) -> torch.Tensor:
        """The item's column of each column's mirror partner (an error names a partner it does not hold)."""
        partners = mirror_ids(layout_points(item))
        return partners if "point_ids" not in item else columns_of(
            item, partners[item["point_ids"]].tolist(), "Mirror (its left/right partners)")


class RandomAffine(RandomTransform):
    """One random affine map per sample, the same for all frames: rotation, scale, shear, translation.

    Angles in degrees drawn from [-rotation, rotation] and [-shear, shear] (x-shear), the scale from
    ``scale``, the shift from [-t, t] per axis (in the item's units). It turns about the picture's centre
    (0.5, 0.5), or the shoulder midpoint after Normalize. ``image_size=(210, 260)``: rotate and shear in
    pixels (x and y normalised to different lengths), unless Normalize already made them isotropic.
    z is multiplied by the scale. Missing points stay zero.
    """

    def __init__(self, rotation: float = 10.0, scale: Tuple[float, float] = (0.9, 1.1), shear: float = 5.0,
                 translate: Tuple[float, float] = (0.05, 0.05), image_size: Optional[Tuple[int, int]] = None,
                 seed: Optional[int] = None) -> None:
        super().__init__(seed)
        if scale[0] <= 0 or scale[1] < scale[0]:
            raise ValueError(f"RandomAffine scale={scale!r}; expected (low, high) with 0 < low <= high.")
        self.rotation, self.scale, self.shear = float(rotation), tuple(scale), float(shear)
        self.translate = tuple(translate)
        self.image_size = None if image_size is None else tuple(image_size)
        self._pixels = _pixel_scale(self.image_size)

    def _params(self) -> Dict[str, object]:
        return {"rotation": self.rotation, "scale": self.scale, "shear": self.shear, "translate": self.translate,
                **({"image_size": self.image_size} if self.image_size else {}), **super()._params()}

    def draw(self, generator: torch.Generator) -> np.ndarray:
        """float64 [5]: the uniform draws of one sample (rotation, shear, scale, shift x, shift y)."""
        return torch.rand(5, generator=generator, dtype=torch.float64).numpy()

    def maps(self, draws: np.ndarray, items: Sequence[Item]) -> Tuple[np.ndarray, np.ndarray]:
        """Each sample's map p -> matrix p + offset (float64 [B, 3, 3] and [B, 3]) from its draws ([B, 5])."""
        angle = np.radians(self.rotation * (2 * draws[:, 0] - 1))
        shear = np.radians(self.shear * (2 * draws[:, 1] - 1))
        factor = self.scale[0] + (self.scale[1] - self.scale[0]) * draws[:, 2]
        shift = np.array(self.translate) * (2 * draws[:, 3:] - 1)  # [B, 2]
        cos, sin, tan = np.cos(angle), np.sin(angle), np.tan(shear)
        # factor * rotate @ skew, skew = [[1, tan], [0, 1]]
        linear = factor[:, None, None] * np.stack([np.stack([cos, cos * tan - sin], -1),
                                                   np.stack([sin, sin * tan + cos], -1)], 1)  # [B, 2, 2]
        pixels = np.where(np.array([bool(item.get("isotropic")) for item in items])[:, None], 1.0,
                          self._pixels.numpy().astype(np.float64))  # [B, 2]
        centre = np.array([_centre(item) for item in items])[:, None].repeat(2, axis=1)  # [B, 2]
        # in pixels about the centre, then back: p' = M (p - c) + c + t with M = P^-1 L P
        matrix = np.zeros((len(items), 3, 3))
        matrix[:, :2, :2] = linear * pixels[:, None, :] / pixels[:, :, None]
        matrix[:, 2, 2] = factor
        offset = np.zeros((len(items), 3))
        offset[:, :2] = centre + shift - np.einsum("bij,bj->bi", matrix[:, :2, :2], centre)
        return matrix, offset

    __call__ = planned_call

    def plan(self, item: Item, pending: Optional[AffineMap] = None) -> AffineMap:
        """This sample's map, added to ``pending`` (``apply_steps``)."""
        pending = pending if pending is not None else AffineMap()
        ensure_masks(item)
        require_xyz(item, "RandomAffine")
        matrix, offset = self.maps(self.draw(self.generator(item))[None], [item])
        return pending.then(matrix[0], offset[0])

    def batch_call(self, batch: Batch) -> None:
        """``plan`` over a batch (``transforms.batch``): each sample's draw, their maps made at once."""
        batch.linear(*self.maps(np.stack([self.draw(self.generator(item)) for item in batch.items]),
                                      batch.items))
