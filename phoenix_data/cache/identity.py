"""What a cache's settings identity says: how two identities differ, the refusal of a cache built with
other settings, and what a discard threw away (records per release and split)."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import lmdb

from ..record import CacheError


def count_by_split(txn: lmdb.Transaction, db) -> Dict[str, int]:
    """Records per ``release/split`` (the first two parts of their keys)."""
    counts: Dict[str, int] = {}
    for key in txn.cursor(db=db).iternext(keys=True, values=False):
        group = "/".join(bytes(key).decode(errors="replace").split("/")[:2])
        counts[group] = counts.get(group, 0) + 1
    return counts


def describe_discarded(counts: Dict[str, int]) -> str:
    """'12 records (phoenix-2014-multisigner/train 10, PHOENIX-2014-T/dev 2)'."""
    total = sum(counts.values())
    parts = ", ".join(f"{group} {n}" for group, n in sorted(counts.items()))
    return f"{total} record{'' if total == 1 else 's'}" + (f" ({parts})" if parts else "")


def raise_if_differs(path: Path, stored: dict, identity: dict) -> None:
    if stored.get("fingerprint") == identity["fingerprint"]:
        return
    diffs = identity_differences(stored, identity)
    raise CacheError(f"cache {path} was built with other extraction settings ({'; '.join(diffs)}). "
                     "Use another cache path for these settings, or pass overwrite=True "
                     "(--overwrite) to discard its records and extract again.")


def identity_differences(old: dict, new: dict, labels: Tuple[str, str] = ("cache", "now")) -> List[str]:
    """What differs between two settings identities (``settings.identity()``), one line per entry."""
    diffs = []
    # caches from before backends existed hold legacy records and no "backend" entry
    for name, default in (("backend", "legacy"), ("mediapipe", None), ("schema", None), ("model_bundle_sha256", None)):
        if old.get(name, default) != new.get(name, default):
            diffs.append(f"{name}: {labels[0]} {old.get(name, default)!r}, {labels[1]} {new.get(name, default)!r}")
    old_settings, new_settings = old.get("settings", {}), new.get("settings", {})
    for name in sorted(set(old_settings) | set(new_settings)):
        if old_settings.get(name) != new_settings.get(name):
            diffs.append(f"{name}: {labels[0]} {old_settings.get(name)!r}, {labels[1]} {new_settings.get(name)!r}")
    for name in sorted(set(old) | set(new)):  # anything else an extractor puts in its identity
        if name not in ("backend", "mediapipe", "schema", "model_bundle_sha256", "settings", "fingerprint") \
                and old.get(name) != new.get(name):
            diffs.append(f"{name}: {labels[0]} {old.get(name)!r}, {labels[1]} {new.get(name)!r}")
    return diffs
