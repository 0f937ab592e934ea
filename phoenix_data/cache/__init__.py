"""The LMDB landmark cache and what writes into it.

- ``store``: ``LandmarkCache`` (records, failures, metadata of one extractor spec);
- ``lmdb_env``: one LMDB environment per process and path, map growth, free space;
- ``claims``: per-sample claims, so that processes extracting into one cache share the work;
- ``fill``: put one sample's record (the step the Dataset and the warm-up share);
- ``audit``: which records are damaged or no longer match their frames (``--verify``, ``--repair``).
"""
from .lmdb_env import CacheSpaceError
from .store import (
    DEFAULT_MAP_SIZE,
    MAX_KEY_BYTES,
    CacheError,
    CacheRecordError,
    LandmarkCache,
    db_key,
    decode_header,
    decode_record,
    describe_discarded,
    encode_record,
)

__all__ = ["DEFAULT_MAP_SIZE", "MAX_KEY_BYTES", "CacheError", "CacheRecordError", "CacheSpaceError", "LandmarkCache",
           "db_key", "decode_header", "decode_record", "describe_discarded", "encode_record"]
