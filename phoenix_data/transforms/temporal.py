"""Transforms along time: FillGaps, TimeWarp, FrameDropout, Velocity. Masks follow every frame they move."""
from __future__ import annotations

from typing import Dict, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..record import PARTS, part_of_points
from .base import (
    Item,
    RandomTransform,
    Transform,
    ensure_masks,
    has_value,
    layout_points,
    part_slices,
    point_ids,
    require_xyz,
    uniform,
)
from .batch import Batch, rows

PerFrameKey = Literal["landmarks", "confidence", "valid", "imputed"]
PER_FRAME_KEYS: Tuple[PerFrameKey, ...] = ("landmarks", "confidence", "valid", "imputed")
HANDS = ("left_hand", "right_hand")


def take_frames(item: Item, index: torch.Tensor, keys: Sequence[PerFrameKey] = PER_FRAME_KEYS) -> Item:
    """The item at frames ``index`` (LongTensor[T']): landmarks, confidence and masks alike (``keys``)."""
    for key in keys:
        item[key] = item[key].index_select(0, index)
    item["num_frames"] = int(index.shape[0])
    return item


def gap_bounds(found: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """For bool Tensor[T, P]: the last found frame at or before each frame (-1: none) and the first at or
    after it (T: none), both LongTensor[T, P]."""
    frames = found.shape[0]
    t = torch.arange(frames)[:, None].expand_as(found)
    before = torch.where(found, t, torch.full_like(t, -1)).cummax(dim=0).values
    after = torch.where(found, t, torch.full_like(t, frames)).flip(0).cummin(dim=0).values.flip(0)
    return before, after


class FillGaps(Transform):
    """Linear interpolation of points of ``parts`` missing for at most ``max_gap`` consecutive frames
    between two frames where they were found. Longer gaps and gaps at either end stay missing (zero,
    confidence 0). Filled points get ``imputed`` True (``valid`` stays False) and confidence 0: the value
    is made up, MediaPipe gave no confidence for it. Only found points serve as ends of a gap.
    """

    def __init__(self, max_gap: int = 3, parts: Sequence[str] = HANDS) -> None:
        if max_gap < 1:
            raise ValueError(f"FillGaps max_gap={max_gap!r}; expected at least 1 frame.")
        unknown = [p for p in parts if p not in PARTS]
        if unknown or not parts:
            raise ValueError(f"FillGaps parts={tuple(parts)!r}; expected some of {', '.join(PARTS)}.")
        self.max_gap, self.parts = int(max_gap), tuple(parts)

    def _params(self) -> Dict[str, object]:
        return {"max_gap": self.max_gap, "parts": self.parts}

    def columns(self, item: Item) -> torch.Tensor:
        """Columns of the item that belong to ``parts``."""
        slices = part_slices(layout_points(item))
        ids = point_ids(item)
        inside = torch.zeros_like(ids, dtype=torch.bool)
        for part in self.parts:
            inside |= (ids >= slices[part].start) & (ids < slices[part].stop)
        return inside.nonzero().flatten()

    def __call__(self, item: Item) -> Item:
        ensure_masks(item)
        require_xyz(item, "FillGaps")
        cols = self.columns(item)
        found = item["valid"][:, cols]
        before, after = gap_bounds(found)
        fill = ~found & ~item["imputed"][:, cols] & (before >= 0) & (after < found.shape[0])
        fill &= (after - before - 1) <= self.max_gap
        if not bool(fill.any()):
            return item
        points = item["landmarks"][:, cols]
        channels = points.shape[-1]
        start = points.gather(0, before.clamp(min=0)[..., None].expand(-1, -1, channels))
        end = points.gather(0, after.clamp(max=found.shape[0] - 1)[..., None].expand(-1, -1, channels))
        t = torch.arange(found.shape[0])[:, None]
        weight = ((t - before).float() / (after - before).clamp(min=1).float())[..., None]
        landmarks = item["landmarks"].clone()
        landmarks[:, cols] = torch.where(fill[..., None], start + (end - start) * weight, points)
        imputed = item["imputed"].clone()
        imputed[:, cols] |= fill
        item["landmarks"], item["imputed"] = landmarks, imputed
        return item

    @property
    def sides_alike(self) -> bool:
        """Both hands or neither (``transforms.batch``: a batch's points may be swapped by Mirror before it)."""
        return ("left_hand" in self.parts) == ("right_hand" in self.parts)

    def batch_call(self, batch: Batch) -> None:
        """``__call__`` over a batch (``transforms.batch``): the gaps of every sample found at once, a part at
        a time (a part's points are found, and filled, in the same frames), the points filled in one
        assignment a part."""
        batch.apply_pending()
        cols = self.columns(batch.items[0]).numpy()
        parts = part_of_points(layout_points(batch.items[0]))[point_ids(batch.items[0]).numpy()[cols]]
        frames = batch.frames
        t = np.arange(frames)[None, :]
        landmarks = rows(batch.landmarks)  # [B * T, R, K]
        imputed = rows(batch.imputed)
        for part in np.unique(parts).tolist():
            points = cols[parts == part]  # the part's columns
            found = batch.valid[:, :, points[0]]  # [B, T]; False in the padding, so no gap ends there
            before = np.maximum.accumulate(np.where(found, t, -1), axis=1)
            after = np.minimum.accumulate(np.where(found, t, frames)[:, ::-1], axis=1)[:, ::-1]
            fill = ~found & ~batch.imputed[:, :, points[0]] & (before >= 0) & (after < frames)
            fill &= (after - before - 1) <= self.max_gap
            b, f = np.nonzero(fill)
            if not b.size:
                continue
            lo, hi = before[b, f], after[b, f]
            weight = ((f - lo).astype(np.float32) / np.maximum(hi - lo, 1).astype(np.float32))[:, None, None]  # as
            # __call__; the frames as rows of [B * T], each with the part's columns: [n, C, 3]
            at = (b * frames)[:, None]
            start, end = landmarks[at + lo[:, None], :3, points], landmarks[at + hi[:, None], :3, points]
            landmarks[at + f[:, None], :3, points] = start + (end - start) * weight
            if landmarks.shape[1] == 4:
                landmarks[at + f[:, None], 3, points] = 1.0  # has a value now
            imputed[at + f[:, None], points] = True


class TimeWarp(RandomTransform):
    """Resample time at a speed drawn from ``speed`` (a range, or one value): T frames become
    round(T / speed), frame j taken at source time j * speed. Coordinates and confidence are linearly
    interpolated between the two source frames where both have a value, else taken from the nearest one;
    masks are nearest-neighbour (a time halfway between two frames takes the later one). Speed 1 is the
    identity. Missing points stay zero.
    """

    def __init__(self, speed: Union[float, Tuple[float, float]] = (0.8, 1.25), seed: Optional[int] = None) -> None:
        super().__init__(seed)
        low, high = (speed, speed) if isinstance(speed, (int, float)) else speed
        if low <= 0 or high < low:
            raise ValueError(f"TimeWarp speed={speed!r}; expected a value > 0 or (low, high), 0 < low <= high.")
        self.speed = (float(low), float(high))

    def _params(self) -> Dict[str, object]:
        return {"speed": self.speed, **super()._params()}

    def __call__(self, item: Item) -> Item:
        ensure_masks(item)
        frames = item["landmarks"].shape[0]
        speed = uniform(self.generator(item), *self.speed)
        if frames == 0:
            return item
        # the time indices in numpy: small arrays, where each torch call costs more than its arithmetic
        source = np.minimum(np.arange(max(1, round(frames / speed))) * speed, frames - 1)
        first_np = np.floor(source).astype(np.int64)
        fraction = (source - first_np).astype(np.float32)[:, None]  # [T', 1]
        first, second = torch.from_numpy(first_np), torch.from_numpy(np.minimum(first_np + 1, frames - 1))
        weight = torch.from_numpy(fraction)
        later = torch.from_numpy(fraction >= 0.5)  # the nearest source frame is `second` (halves go up)
        present = has_value(item)
        both = present.index_select(0, first) & present.index_select(0, second)
        # where not both ends have a value, weight 0 or 1 picks the nearest frame (zero where it has none);
        # torch.lerp is exact at weights 0 and 1
        weight = torch.where(both, weight, later.float())  # [T', N]
        landmarks, confidence = item["landmarks"], item["confidence"]
        landmarks = torch.lerp(landmarks.index_select(0, first), landmarks.index_select(0, second), weight[..., None])
        confidence = torch.lerp(confidence.index_select(0, first), confidence.index_select(0, second), weight)
        item["landmarks"], item["confidence"] = landmarks, confidence
        # the masks at the nearest frames (landmarks and confidence: interpolated above)
        return take_frames(item, torch.where(later[:, 0], second, first), keys=("valid", "imputed"))

    def batch_call(self, batch: Batch) -> None:
        """``__call__`` over a batch (``transforms.batch``): every sample's frames taken in one gather."""
        speeds = np.array([uniform(self.generator(item), *self.speed) for item in batch.items])
        batch.apply_pending()
        sizes = batch.sizes
        new = np.where(sizes > 0, np.maximum(1, np.round(sizes / speeds)), 0).astype(np.int64)
        last = np.maximum(sizes - 1, 0)[:, None]
        source = np.minimum(np.arange(int(new.max(initial=0)))[None, :] * speeds[:, None], last)  # [B, T']
        first = np.floor(source).astype(np.int64)
        fraction = (source - first).astype(np.float32)
        later = fraction >= 0.5  # the nearest source frame is `second` (halves go up)
        base = np.arange(len(sizes))[:, None] * batch.frames
        first, second = (first + base).ravel(), (np.minimum(first + 1, last) + base).ravel()  # rows of [B * T]
        near = np.where(later.ravel(), second, first)
        # as __call__: interpolated where both source frames have a value, else the nearest frame (weight 0
        # or 1; torch.lerp is exact there: zero where that frame has no value either); the landmarks as
        # planar rows [3, K], one weight per point for all three
        count, shape = batch.valid.shape[2], source.shape
        landmarks = torch.from_numpy(batch.landmarks).view(-1, batch.landmarks.shape[2] * count)[:, :3 * count]
        present = rows(batch.has_value())
        both = batch.taken("first valid", present, first)
        both &= batch.taken("second valid", present, second)
        weight = torch.from_numpy(batch.work.array("weight", both.shape, np.float32))  # [B * T', K]
        torch.where(torch.from_numpy(both), torch.from_numpy(fraction.reshape(-1, 1)),
                    torch.from_numpy(later.reshape(-1, 1).astype(np.float32)), out=weight)
        moved = batch.array("landmarks", shape + (3, count), np.float32)
        ends = [torch.index_select(landmarks, 0, torch.from_numpy(index), out=torch.from_numpy(
            batch.work.array(name, (len(index), 3 * count), np.float32))).view(-1, 3, count)
                for name, index in (("first", first), ("second", second))]  # x, y, z rows (not found's)
        torch.lerp(ends[0], ends[1], weight.unsqueeze(1), out=torch.from_numpy(moved).view(-1, 3, count))
        # the confidence: the pose's visibility, or every point's once a value was filled in (a found and a
        # filled-in value interpolated give a confidence between 0 and 1; see Batch)
        kept = batch.full_confidence() if batch.confidence is not None or batch.imputed.any() else batch.visibility
        rated = batch.array("confidence" if kept is batch.confidence else "visibility", shape + kept.shape[2:],
                            np.float32)
        torch.lerp(torch.from_numpy(batch.taken("first confidence", rows(kept), first)),
                   torch.from_numpy(batch.taken("second confidence", rows(kept), second)),
                   weight if kept is batch.confidence else weight[:, batch.pose],
                   out=torch.from_numpy(rated).view(len(first), -1))
        found = batch.array("valid", shape + (count,), np.bool_)
        np.take(rows(batch.valid), near, axis=0, out=found.reshape(-1, count), mode="clip")
        filled = batch.array("imputed", shape + (count,), np.bool_)
        np.take(rows(batch.imputed), near, axis=0, out=filled.reshape(-1, count), mode="clip")
        for b, size in enumerate(new.tolist()):  # the padding
            for values in (moved, rated, found, filled):
                values[b, size:] = 0
        batch.landmarks, batch.valid, batch.imputed = moved, found, filled
        if kept is batch.confidence:
            batch.confidence = rated
        else:
            batch.visibility = rated
        batch.sizes = new
        for item, size in zip(batch.items, new.tolist()):
            item["num_frames"] = size


class FrameDropout(RandomTransform):
    """Drop each frame with probability ``p`` (the sequence gets shorter), keeping at least ``min_frames``.

    Mind CTC: a sequence must stay at least as long as its target (plus repeats); ``min_frames`` guards
    the extreme only.
    """

    def __init__(self, p: float = 0.1, min_frames: int = 1, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        if not 0.0 <= p < 1.0 or min_frames < 1:
            raise ValueError(f"FrameDropout p={p!r}, min_frames={min_frames!r}; expected 0 <= p < 1, min_frames >= 1.")
        self.p, self.min_frames = float(p), int(min_frames)

    def _params(self) -> Dict[str, object]:
        return {"p": self.p, "min_frames": self.min_frames, **super()._params()}

    def __call__(self, item: Item) -> Item:
        ensure_masks(item)
        frames = item["landmarks"].shape[0]
        generator = self.generator(item)
        keep = torch.rand(frames, generator=generator) >= self.p
        short = min(self.min_frames, frames) - int(keep.sum())
        if short > 0:  # put back random dropped frames
            dropped = (~keep).nonzero().flatten()
            keep[dropped[torch.randperm(len(dropped), generator=generator)[:short]]] = True
        return take_frames(item, keep.nonzero().flatten())


class Velocity(Transform):
    """Append first differences: landmarks become Tensor[T, N, 6] (x, y, z, dx, dy, dz), with
    d[t] = p[t] - p[t-1], zero at t = 0 and wherever either frame has no value at that point.
    Put it last: the geometric transforms refuse 6 channels.
    """

    def __call__(self, item: Item) -> Item:
        ensure_masks(item)
        require_xyz(item, "Velocity")
        landmarks = item["landmarks"]
        present = has_value(item)
        delta = torch.zeros_like(landmarks)
        delta[1:] = landmarks[1:] - landmarks[:-1]
        both = torch.zeros_like(present)
        both[1:] = present[1:] & present[:-1]
        item["landmarks"] = torch.cat([landmarks, delta.masked_fill(~both[..., None], 0.0)], dim=-1)
        return item
