"""Landmark transforms that keep what MediaPipe did not find missing.

``PhoenixLandmarks(..., transform=Compose([...]))``; each step takes and returns the item dict.

Masks: items carry ``valid`` (bool [T, N], found by MediaPipe; per part and frame, see ``validity``) and,
once a step invents a value, ``imputed`` (bool [T, N]). A point with neither is exactly zero with
confidence 0 after every step; only FillGaps gives a missing point a value, and marks it imputed.

Randomness: Mirror, RandomAffine, TimeWarp and FrameDropout each draw from their own ``torch.Generator``.
- ``seed=`` (on the step or on ``Compose``): the generator is seeded from seed, epoch, the sample's ``id``
  and the step's class, so a sample gets the same draw in the main process and in any DataLoader worker,
  in any order. Call ``transform.set_epoch(epoch)`` before each epoch, as for ``LengthBucketBatchSampler``:
  the same sample then gets a new draw each epoch. DataLoader workers copy the transform when they start,
  i.e. at each ``iter(loader)`` by default; with ``persistent_workers=True`` they keep the epoch they
  started with, so use ``persistent_workers=False`` (the default) with a seed.
- no seed: each call seeds its generator from torch's global generator, which DataLoader seeds
  differently per worker and per epoch: workers do not repeat each other; runs are not reproducible.
"""
from .base import Compose, RandomTransform, Transform, ensure_masks, has_value, validity
from .geometry import Mirror, Normalize, RandomAffine
from .points import SUBSETS, SelectPoints, mirror_ids, subset_ids
from .temporal import FillGaps, FrameDropout, TimeWarp, Velocity

__all__ = ["Compose", "FillGaps", "FrameDropout", "Mirror", "Normalize", "RandomAffine", "RandomTransform",
           "SUBSETS", "SelectPoints", "TimeWarp", "Transform", "Velocity", "ensure_masks", "has_value",
           "mirror_ids", "subset_ids", "validity"]
