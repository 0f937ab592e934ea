"""The LMDB landmark cache and what writes into it.

- ``store``: ``LandmarkCache`` (records, failures, metadata of one extractor spec);
- ``lmdb_env``: one LMDB environment per process and path, map growth, free space;
- ``claims``: per-sample claims, so that processes extracting into one cache share the work;
- ``fill``: put one sample's record (the step the Dataset and the warm-up share);
- ``audit``: which records are damaged or no longer match their frames (``--verify``, ``--repair``).
"""
import sys


def require_posix(platform: str = sys.platform) -> None:
    """The cache needs POSIX file locks (fcntl: per-sample claims, LMDB's lock file) and resource limits:
    Linux and macOS have them, Windows does not."""
    if platform.startswith("win"):
        raise ImportError("phoenix_data's landmark cache needs a POSIX system (Linux or macOS): it shares "
                          "work between processes with POSIX file locks (fcntl), which Windows lacks. On "
                          "Windows, run phoenix_data under WSL2.")


require_posix()

from .identity import describe_discarded  # noqa: E402
from .lmdb_env import CacheSpaceError  # noqa: E402 - after the platform check: it imports fcntl
from .store import (  # noqa: E402
    DEFAULT_MAP_SIZE,
    MAX_KEY_BYTES,
    CacheError,
    CacheRecordError,
    LandmarkCache,
    db_key,
    decode_header,
    decode_record,
    encode_record,
)

__all__ = ["DEFAULT_MAP_SIZE", "MAX_KEY_BYTES", "CacheError", "CacheRecordError", "CacheSpaceError", "LandmarkCache",
           "db_key", "decode_header", "decode_record", "describe_discarded", "encode_record"]
