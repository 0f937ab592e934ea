"""How pytest-xdist hands out the suite's tests: one test at a time, as its ``load`` distribution does,
except the modules that make a process a Ray driver (``RAY_DRIVER_MODULES`` in conftest.py), which go
whole to one process that runs nothing else.

Why: a process that has been a Ray driver must fork nothing afterwards (on Python 3.13 a DataLoader
worker forked from it dies of a segmentation fault), and a local Ray cluster takes seconds to start.
Spread over the processes, each of them started its own cluster and had to keep the Ray tests for its
end; kept apart, one cluster serves them all, and its waits (actors starting, nodes dying) overlap the
rest of the suite in the other processes. With one process only, the Ray tests run last in it.
"""
from __future__ import annotations

from pathlib import Path
from typing import AbstractSet

from xdist.scheduler import LoadScopeScheduling

RAY_UNIT = "<the Ray driver modules>"


class RayApartScheduling(LoadScopeScheduling):
    """``--dist load`` with the Ray driver modules as one unit, alone on the process that takes it."""

    def __init__(self, config, log=None, ray_modules: AbstractSet[str] = frozenset()) -> None:
        super().__init__(config, log)
        self.ray_modules = ray_modules
        self.ray_node = None
        self.ray_node_lost = False  # crashed: its Ray tests go back to the queue, to run last elsewhere

    def _split_scope(self, nodeid: str) -> str:
        return RAY_UNIT if Path(nodeid.split("::", 1)[0]).name in self.ray_modules else nodeid

    def _assign_work_unit(self, node) -> None:
        if self.ray_node is None and not self.ray_node_lost and RAY_UNIT in self.workqueue and len(self.nodes) > 1:
            self.ray_node = node  # the first process asking: the Ray tests, then nothing else
            scope = RAY_UNIT
        else:  # any other unit first: the Ray one goes last to a process that runs the rest too
            scope = next((s for s in self.workqueue if s != RAY_UNIT), RAY_UNIT)
        unit = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = unit
        collection = self.registered_collections[node]
        node.send_runtest_some([collection.index(nodeid) for nodeid, done in unit.items() if not done])
        if node is self.ray_node:
            # nothing more for it; a worker runs its last test only once it knows no other follows
            node.shutdown()

    def _reschedule(self, node) -> None:
        if node is self.ray_node:
            return None  # shut down when it took the Ray tests
        return super()._reschedule(node)

    def remove_node(self, node):
        if node is self.ray_node and self._pending_of(self.assigned_work.get(node, {})):
            self.ray_node, self.ray_node_lost = None, True
        return super().remove_node(node)
