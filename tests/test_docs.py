"""The docs cannot go stale: every ```python block of README.md and docs/ runs, every relative link resolves.

The blocks name the corpus as ``/data/<archive folder>`` and the cache as ``/data/cache/landmarks``,
as a user's machine would have them. Here ``/data`` is the demo tree (the three releases in their
real layout) with its cache warmed by the real command and real MediaPipe, and the released
ground-truth STM files written from its CSVs: a block that needs the real corpus runs on the demo.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from helpers import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINKED = [*DOCS, REPO_ROOT / "benchmarks" / "README.md", REPO_ROOT / "examples" / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def python_blocks() -> List[Tuple[Path, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            found.append((path, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    return {slug(h) for h in HEADING.findall(path.read_text())}


def test_the_docs_exist_and_every_page_is_linked_from_the_readme():
    assert len(DOCS) > 5, DOCS
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250, "the README is read in five minutes: move detail to docs/"
    unlinked = [p.name for p in DOCS[1:] if f"(docs/{p.name})" not in readme]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


@pytest.mark.parametrize("path", LINKED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(path):
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading '#{anchor}' in {dest.name} (has {sorted(anchors(dest))})")
    assert not broken, f"{path.name}:\n" + "\n".join(broken)


WARMED = [("multisigner", "train"), ("2014-T", "dev")]  # what the blocks read through PhoenixLandmarks


@pytest.fixture(scope="module")
def docs_data(tmp_path_factory) -> Path:
    """``/data`` of the blocks: the demo tree, its cache warmed by ``phoenix-warm-cache`` (real MediaPipe) for
    the splits the blocks read (``WARMED``)."""
    from phoenix_data.corpus import RELEASES, find_release, read_corpus
    from phoenix_data.demo import build_demo
    from phoenix_data.evaluation import stm_from_samples, write_stm

    data = tmp_path_factory.mktemp("data")
    build_demo(data)
    for release, split in WARMED:
        warm = subprocess.run([sys.executable, "-m", "phoenix_data.cli", "warm-cache", "--root", str(data),
                               "--cache", str(data / "cache" / "landmarks"), "--workers", "2", "--release", release,
                               "--split", split], capture_output=True, text=True, timeout=600)
        assert warm.returncode == 0, warm.stderr[-3000:]
    for name in RELEASES:  # the released ground truth, as 2014's evaluation/ folder holds it
        release = find_release(data, name)
        if not name.startswith("phoenix-2014"):
            continue
        (release.root / "evaluation").mkdir(exist_ok=True)
        for split in ("dev", "test"):
            samples = read_corpus(release.root, split)
            write_stm(release.root / "evaluation" / f"phoenix2014-groundtruth-{split}.stm", stm_from_samples(samples))
    return data


BLOCKS = python_blocks()


@pytest.mark.parametrize("path, line, code", BLOCKS,
                         ids=[f"{p.relative_to(REPO_ROOT)}:{line}" for p, line, _ in BLOCKS])
def test_python_block_runs(path, line, code, docs_data, tmp_path):
    replaced: Dict[str, str] = {"/data/": f"{docs_data}/", "/tmp/": f"{tmp_path}/"}
    code = re.sub("|".join(map(re.escape, replaced)), lambda m: replaced[m.group(0)], code)  # one pass
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{path.name}:{line} failed:\n{done.stderr[-4000:]}"
