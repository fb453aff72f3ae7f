"""Merged updates: concurrent small updates of one session computed as one batch.

Under load a session's updates arrive together (a trainer's 32 connections, each waiting for
its previous answer), and each small update costs mostly per call: running the metric's
`update_state` on 32 samples costs nearly what it costs on 1,000. So an update that can merge
does not compute its batch at once: it waits for the event loop's current turn to finish,
and then the updates of that session that arrived in the same turn are computed as one
batch, the metric run once on their samples concatenated (which the metric declares to equal
separate updates for these shapes: `Metric.merges_along_batch`). The batch goes to the store
as one, carrying every request's Idempotency-Key and sample count (`Batch.joined`), so each
request gets its own answer and a retry of any of them is answered as its own.

Updates merge only if they are small, unsliced, of the same fields with the same shapes but
the batch axis, with the same epoch precondition and distinct keys, and the session's metric
is built in (a plugin's declaration is not trusted). Whenever a merged batch cannot be
computed (one bad batch among them), meets a key answered before (a retry), or was computed
for a session since re-created, each of its updates is applied alone, exactly as without
merging: the bad batch fails alone, the retry is answered alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.store.base import Applied

#: The most elements one merged batch holds: computing it on the event loop must stay as
#: cheap as one update that is not offloaded to a thread (service.OFFLOAD_BATCH_ELEMENTS).
MAX_MERGED_ELEMENTS = 16_384


@dataclass
class PendingUpdate:
    """One request's decoded update, waiting to be computed (alone or merged)."""

    inputs: dict[str, np.ndarray]
    sample_weight: np.ndarray | None
    epoch: int | None
    idempotency_key: str | None
    fingerprint: str
    samples: int
    elements: int
    future: asyncio.Future[Applied] = field(init=False)

    def shapes(self) -> tuple[Any, ...]:
        """What must be equal for updates to merge: epoch precondition, fields, and every
        array's shape but its first axis."""
        weight = None if self.sample_weight is None else self.sample_weight.shape[1:]
        return (self.epoch, weight,
                tuple((k, a.shape[1:]) for k, a in sorted(self.inputs.items())))


def can_merge(inputs: dict[str, np.ndarray], sample_weight: np.ndarray | None) -> bool:
    """Arrays that share one batch axis (every array at least 1-D, all of one length): only
    then is concatenation along axis 0 concatenation of samples."""
    arrays = [*inputs.values(), *([] if sample_weight is None else [sample_weight])]
    if not arrays or any(a.ndim == 0 for a in arrays):
        return False
    length = arrays[0].shape[0]
    return length > 0 and all(a.shape[0] == length for a in arrays)


#: Applies one update alone (the service's usual path); sets nothing on the future.
ApplyAlone = Callable[[str, PendingUpdate], Awaitable[Applied]]
#: Applies several updates as one batch: the first one's answer, an error that is every
#: update's answer, or None when they must be applied alone after all.
ApplyMerged = Callable[[str, list[PendingUpdate]], Awaitable[Applied | Exception | None]]


class UpdateMerger:
    """Collects a session's updates over one event-loop turn and applies them merged."""

    def __init__(self, apply_alone: ApplyAlone, apply_merged: ApplyMerged,
                 max_updates: int) -> None:
        self._apply_alone = apply_alone
        self._apply_merged = apply_merged
        self.max_updates = max_updates
        self._waiting: dict[str, list[PendingUpdate]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Updates answered as part of a merged batch, since the start (tests, benchmarks).
        self.merged_updates = 0

    async def submit(self, name: str, update: PendingUpdate) -> Applied:
        """The update's answer. The first update of a session in a turn leads: it yields once,
        so that the updates already due in this turn join it, then answers alone if none did
        (no task: a lone update costs one turn of the loop) or hands the group to a task of
        its own (so that the leader's cancellation, a client gone, strands nobody)."""
        loop = asyncio.get_running_loop()
        update.future = loop.create_future()
        waiting = self._waiting.get(name)
        if waiting is not None:
            waiting.append(update)
            return await update.future
        group = self._waiting[name] = [update]
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            group.remove(update)  # its client left before anything was computed: drop it
            raise
        finally:
            del self._waiting[name]
            if any(other is not update for other in group):  # company came: a task serves it
                task = loop.create_task(self._flush(name, group))
                self._tasks.add(task)  # a reference, so the task is not collected early
                task.add_done_callback(self._tasks.discard)
        if len(group) == 1:
            return await self._apply_alone(name, update)
        return await update.future

    async def _flush(self, name: str, group: list[PendingUpdate]) -> None:
        await asyncio.gather(*(self._settle(name, part) for part in self._parts(group)))

    def _parts(self, group: list[PendingUpdate]) -> list[list[PendingUpdate]]:
        """The updates that can go as one batch, in order of arrival: equal shapes, distinct
        keys, at most `max_updates` and MAX_MERGED_ELEMENTS each."""
        parts: list[_Part] = []
        open_parts: dict[tuple[Any, ...], _Part] = {}
        for update in group:
            shapes = update.shapes()
            part = open_parts.get(shapes)
            if part is None or not part.takes(update, self.max_updates):
                part = open_parts[shapes] = _Part()
                parts.append(part)
            part.add(update)
        return [part.updates for part in parts]

    async def _settle(self, name: str, part: list[PendingUpdate]) -> None:
        """Answer every update of `part`: merged when it can, else each alone."""
        outcome: Applied | Exception | None = None
        if len(part) > 1:
            try:
                outcome = await self._apply_merged(name, part)
            except Exception as exc:  # noqa: BLE001 - the store's error is every update's
                outcome = exc
        if outcome is None:
            await asyncio.gather(*(self._alone(name, update) for update in part))
            return
        if isinstance(outcome, Applied):
            self.merged_updates += len(part)
        for update in part:
            if update.future.done():
                continue
            if isinstance(outcome, Exception):
                update.future.set_exception(outcome)
            else:
                update.future.set_result(Applied(outcome.epoch, update.samples))

    async def _alone(self, name: str, update: PendingUpdate) -> None:
        try:
            answer = await self._apply_alone(name, update)
        except Exception as exc:  # noqa: BLE001 - the request's own error, raised there
            if not update.future.done():
                update.future.set_exception(exc)
            return
        if not update.future.done():
            update.future.set_result(answer)


@dataclass
class _Part:
    """Updates that will go as one batch."""

    updates: list[PendingUpdate] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    elements: int = 0

    def takes(self, update: PendingUpdate, max_updates: int) -> bool:
        return len(self.updates) < max_updates \
            and self.elements + update.elements <= MAX_MERGED_ELEMENTS \
            and update.idempotency_key not in self.keys

    def add(self, update: PendingUpdate) -> None:
        self.updates.append(update)
        self.elements += update.elements
        if update.idempotency_key is not None:
            self.keys.add(update.idempotency_key)
