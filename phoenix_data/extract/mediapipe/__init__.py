"""MediaPipe Holistic behind the extractor seam: the ONLY package of phoenix_data that imports mediapipe.

- ``settings``: ``HolisticSettings`` (the default ``ExtractorSpec``), backends, identity;
- ``legacy``: ``mp.solutions.holistic`` of mediapipe 0.10.21;
- ``tasks``: the Tasks API's HolisticLandmarker on a bundle built offline (``bundle``, ``tflite_edit``);
- ``runtime``: the installed version, memory given back after a video, build counts;
- ``logs``: MediaPipe's own C++ log lines kept out of an extracting process's stderr.

Importing this package imports no mediapipe: only ``build()`` does, in an extracting process.
"""
from .runtime import LEGACY_MEDIAPIPE, mediapipe_version
from .settings import BACKENDS, HolisticSettings, default_backend

__all__ = ["BACKENDS", "LEGACY_MEDIAPIPE", "HolisticSettings", "default_backend", "mediapipe_version"]
