"""phoenix_data: RWTH-PHOENIX-Weather as a PyTorch Dataset of MediaPipe Holistic landmarks.

``read_corpus`` and the corpus records import without torch; the torch-facing names
(``PhoenixLandmarks``, ``collate_ctc``, ...) load on first use.
"""
import importlib

from .corpus import RELEASES, SPLITS, CorpusError, Sample, find_release, read_corpus
from .frames import FramesError, list_frames

__version__ = "0.1.0"

_LAZY = {
    "PhoenixLandmarks": "phoenix_data.dataset",
    "Vocabulary": "phoenix_data.vocab",
    "collate_ctc": "phoenix_data.batching",
    "LengthBucketBatchSampler": "phoenix_data.batching",
    "HolisticSettings": "phoenix_data.extract.mediapipe",
    "LandmarkCache": "phoenix_data.cache",
    "CacheError": "phoenix_data.cache",
}


# old name -> (new name, what to say): importable for one more release, with a DeprecationWarning
_RENAMED = {"ExtractionSettings": "HolisticSettings"}


def __getattr__(name):
    if name in _RENAMED:
        import warnings  # noqa: PLC0415

        warnings.warn(f"phoenix_data.{name} is now phoenix_data.{_RENAMED[name]}; the old name goes in the next "
                      "release.", DeprecationWarning, stacklevel=2)
        name = _RENAMED[name]
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'phoenix_data' has no attribute {name!r}")


__all__ = ["RELEASES", "SPLITS", "CorpusError", "FramesError", "Sample", "find_release",
           "list_frames", "read_corpus"] + list(_LAZY)
