"""Metric collections: several metrics run on every batch, as Keras' `compile(metrics=[...])`.

A collection is itself a `Metric`, so the engine and the stores serve it unchanged: its
variables are its members' variables in member order, named `"<member>/<variable>"`; its
`update_state` runs every member on the batch (one contribution, so one atomic store
operation: a batch lands in every member or in none); its `result()` is `{member: result}`.
Lazily shaped members keep their layouts under their names in the collection's layout.
Anything that works for a metric (epochs, idempotency, merge, history, TTL, a time window or
slices later) works for a collection.

**Compute groups.** Members often keep the same state: Precision and Recall with equal
thresholds both count true positives; AUC(curve="ROC") and AUC(curve="PR") keep the same
TP/FP/TN/FN. A metric declares what determines a variable's per-batch value
(`Variable.share_key`); variables with equal keys, shapes and dtypes hold equal values after
any batches, so the collection stores one of them (the first, in member order) and every
member of the group reads it. `variables` still shows each member's variables under their
Keras names; `stored_variables` is what the engine lays out in the store. A member whose
every variable is stored by one earlier member of the same class is not even run: its
leader's values are copied (AUC ROC beside AUC PR costs one AUC update).

Only variables that exist before the first batch are grouped, and the groups are recorded in
the session (`shared` in the arguments) when it is created, so a session's storage layout
never changes under it, whatever later versions declare.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from app.errors import ConfigError, InvalidInput
from app.metrics import engine
from app.metrics.base import Metric, Variable, check_state_size
from app.metrics.limits import MAX_COLLECTION_MEMBERS

if TYPE_CHECKING:
    from app.metrics.registry import Registry

#: `SessionMeta.metric` of a collection session: no metric class can have this name.
COLLECTION = "[collection]"

#: The most members a collection may have (see `limits.py`).
MAX_MEMBERS = MAX_COLLECTION_MEMBERS


@dataclass
class Member:
    name: str  # the member's config `name`: its key in results and variable names
    class_name: str  # canonical class name
    metric: Metric


class MemberVariable(Variable):
    """A member's variable as the collection shows it, `"<member>/<variable>"`.

    It reads its member's own variable; a write (loading a stored state) goes to every
    variable of its compute group, so every member sees the one stored value."""

    def __init__(self, name: str, own: Variable, group: Sequence[Variable]) -> None:
        # Not Variable.__init__: the arrays are the member's; this object only names them.
        self.name = name
        self.shape = own.shape
        self.dtype = own.dtype
        self.aggregation = own.aggregation
        self.initial_value = own.initial_value
        self.cumulative = own.cumulative
        self.share_key = own.share_key
        self._own = own
        self._group = [own, *(v for v in group if v is not own)]

    @property
    def value(self) -> np.ndarray:
        return self._own.value

    @value.setter
    def value(self, value: np.ndarray) -> None:
        for variable in self._group:
            variable.value = value

    @property
    def grouped(self) -> bool:
        """Whether other members' variables hold this one's value (a compute group)."""
        return len(self._group) > 1


@dataclass
class _Layout:
    """The collection's variables for one set of member variables (rebuilt when a lazy
    member builds or unbuilds its variables)."""

    members: list[list[Variable]]  # each member's own variables, as they were
    shown: list[MemberVariable]  # every member's variables, in member order
    stored: list[MemberVariable]  # one per compute group, in member order
    aliases: dict[str, list[str]]  # stored name -> every name of its group (groups of 2+)
    skipped: list[bool]  # per member: all its state is stored by one earlier member


class MetricCollection(Metric):
    """Every member runs on every batch; see the module's docstring."""

    def __init__(self, members: list[Member], shared: list[list[str]]) -> None:
        super().__init__(name="metric_collection")
        self.members = members
        self.inputs = members[0].metric.inputs
        self.lazy = any(m.metric.lazy for m in members)
        self._groups = {name: group for group in shared for name in group}
        self._cached: _Layout | None = None
        self._check_groups()

    # -- the variables ---------------------------------------------------------------------
    def _current(self) -> _Layout:
        """The layout for the members' current variables (cached while they stay the same
        objects; a lazy member's build replaces its variables)."""
        now = [m.metric.variables for m in self.members]
        cached = self._cached
        if cached is not None and len(cached.members) == len(now) and all(
                len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))
                for a, b in zip(cached.members, now, strict=True)):
            return cached
        self._cached = self._layout_for(now)
        return self._cached

    def _layout_for(self, variables: list[list[Variable]]) -> _Layout:
        named = [(f"{m.name}/{v.name}", v, i)
                 for i, (m, own) in enumerate(zip(self.members, variables, strict=True))
                 for v in own]
        by_name = {name: (v, i) for name, v, i in named}
        shown: list[MemberVariable] = []
        stored: list[MemberVariable] = []
        aliases: dict[str, list[str]] = {}
        owners: list[set[int]] = [set() for _ in self.members]  # who stores each one's state
        for name, own, index in named:
            group = [n for n in self._groups.get(name, [name]) if n in by_name]
            proxy = MemberVariable(name, own, [by_name[n][0] for n in group])
            shown.append(proxy)
            if group[0] == name:
                stored.append(proxy)
                if len(group) > 1:
                    aliases[name] = group
            owners[index].add(by_name[group[0]][1])
        skipped = [self._skippable(i, owners[i]) for i in range(len(self.members))]
        return _Layout(variables, shown, stored, aliases, skipped)

    def _skippable(self, index: int, owners: set[int]) -> bool:
        """A member needs no update of its own when one earlier member of the same class
        (same `update_state`, so the same checks of the batch) stores all of its state."""
        member = self.members[index].metric
        if member.lazy or len(owners) != 1:
            return False
        (owner,) = owners
        return owner < index and type(self.members[owner].metric).update_state \
            is type(member).update_state

    @property
    def variables(self) -> list[Variable]:
        return list(self._current().shown)

    @property
    def stored_variables(self) -> list[Variable]:
        return list(self._current().stored)

    def variable_aliases(self) -> dict[str, list[str]]:
        return self._current().aliases

    def shared_names(self) -> list[list[str]]:
        """The compute groups of the current variables, as names (recorded at creation)."""
        return [list(group) for group in self._current().aliases.values()]

    def _check_groups(self) -> None:
        """Recorded groups must name variables that can hold one value."""
        variables = {v.name: v for v in self.variables}
        for group in {id(g): g for g in self._groups.values()}.values():
            present = [variables[n] for n in group if n in variables]
            first = present[0] if present else None
            if first is None or len(present) != len(group) or any(
                    (v.shape, v.dtype, v.aggregation, v.cumulative)
                    != (first.shape, first.dtype, first.aggregation, first.cumulative)
                    or not np.array_equal(v.initial_value, first.initial_value)
                    for v in present):
                raise ConfigError(f"the collection's recorded compute group {group} does not "
                                  "name variables that can share one state")

    # -- lazily shaped members ---------------------------------------------------------------
    @property
    def layout(self) -> dict[str, Any] | None:
        """The built lazy members' layouts by member name (None: none is built)."""
        built = {m.name: m.metric.layout for m in self.members
                 if m.metric.lazy and m.metric.layout is not None}
        return built or None

    @property
    def built(self) -> bool:
        return all(m.metric.built for m in self.members)

    def build(self, layout: dict[str, Any]) -> None:
        for member in self.members:
            if not member.metric.lazy:
                continue
            if member.name in layout:
                member.metric.build(layout[member.name])
            else:
                member.metric.unbuild()

    def unbuild(self) -> None:
        for member in self.members:
            if member.metric.lazy:
                member.metric.unbuild()

    # -- state size ----------------------------------------------------------------------------
    def _stored_elements(self) -> int:
        return sum(math.prod(v.shape) for v in self.stored_variables)

    def state_elements(self) -> int | None:
        return self._stored_elements() if self.built else None

    def limit_state(self, max_elements: int | None) -> None:
        """The collection's state counts as a whole: its stored variables now, and each lazy
        member may build at most what the others leave (checked again after a first batch)."""
        self.max_state_elements = max_elements
        held = self._stored_elements()
        check_state_size(self, held, ConfigError, "with these members")
        for member in self.members:
            if member.metric.lazy:
                own = sum(math.prod(v.shape) for v in member.metric.variables)
                member.metric.max_state_elements = None if max_elements is None \
                    else max_elements - (held - own)
                member.metric.state_limit_scope = (
                    f"left by the collection's other members, of {max_elements:,} per session "
                    "(TALLY_MAX_STATE_ELEMENTS)")

    # -- the Keras API -----------------------------------------------------------------------
    def update_state(self, *args: Any, sample_weight: Any = None, **inputs: Any) -> None:
        if args:
            inputs = {**dict(zip(self.inputs, args, strict=False)), **inputs}
        built_before = self.built
        layout = self._current()
        for member, skip in zip(self.members, layout.skipped, strict=True):
            if not skip:
                self._update_member(member, inputs, sample_weight)
        for proxy in self._current().stored:
            if proxy.grouped:  # every member of a group holds the stored value (a member
                proxy.value = proxy.value  # that did not run, too)
        if not built_before:
            check_state_size(self, self._stored_elements(), InvalidInput,
                             f"with the layout {self.layout} of this first batch")

    @staticmethod
    def _update_member(member: Member, inputs: dict[str, Any], sample_weight: Any) -> None:
        try:
            engine.run_update(member.metric, inputs, sample_weight)
        except InvalidInput as exc:
            raise InvalidInput(f"member {member.name!r} ({member.class_name}): {exc.detail}")\
                from None

    def result(self) -> dict[str, Any]:
        return {m.name: m.metric.result() if m.metric.built else m.metric.unbuilt_result()
                for m in self.members}

    def unbuilt_result(self) -> dict[str, Any]:
        return self.result()

    def reset_state(self) -> None:
        for member in self.members:
            member.metric.reset_state()

    def merges_along_batch(self, inputs: Mapping[str, np.ndarray]) -> bool:
        return all(m.metric.merges_along_batch(inputs) for m in self.members)

    def get_config(self) -> dict[str, Any]:
        return {"metrics": [{"class_name": m.class_name, "config": m.metric.get_config()}
                            for m in self.members]}


# -- building a collection from a session's arguments ------------------------------------------


def build_collection(registry: Registry, args: dict[str, Any]) -> MetricCollection:
    """A collection from `{"metrics": [{"metric", "config"?}, ...], "shared"?: [[names]]}`:
    every entry validated (shape, class, config), member names distinct, inputs alike.
    Without `shared` (a new session) the compute groups are found from the members'
    declarations; with it (a stored session) the recorded groups are used."""
    entries = args.get("metrics")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"'metrics' must be a non-empty list of {{\"metric\": <class>, "
                          f"\"config\": {{...}}}} objects; got {entries!r:.200}")
    if len(entries) > MAX_MEMBERS:
        raise ConfigError(f"a collection has at most {MAX_MEMBERS} members; got {len(entries)}")
    members = [_member(registry, i, entry) for i, entry in enumerate(entries)]
    _check_names(members)
    _check_inputs(members)
    shared = args.get("shared")
    if shared is None:
        return MetricCollection(members, find_groups(members))
    return MetricCollection(members, shared)


def _member(registry: Registry, index: int, entry: Any) -> Member:
    where = f"metrics[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be an object {{\"metric\": <class>, \"config\": "
                          f"{{...}}}}; got {entry!r:.200}")
    unknown = sorted(set(entry) - {"metric", "config"})
    if unknown:
        raise ConfigError(f"unknown field(s) {unknown} in {where}; expected 'metric' and "
                          "optional 'config'")
    metric, config = entry.get("metric"), entry.get("config")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(f"{where}.metric must be a metric class name (string); got "
                          f"{metric!r:.100}")
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"{where}.config must be an object of constructor arguments; got "
                          f"{config!r:.100}")
    spec, instance = registry.build(metric, config)
    return Member(instance.name, spec.name, instance)


def _check_names(members: list[Member]) -> None:
    seen: dict[str, int] = {}
    for i, member in enumerate(members):
        if member.name in seen:
            raise ConfigError(
                f"metrics[{seen[member.name]}] and metrics[{i}] are both named "
                f"{member.name!r}; members are named by their config 'name' (results and "
                "variables are keyed by it), so give one of them another name")
        seen[member.name] = i


def _check_inputs(members: list[Member]) -> None:
    first = members[0]
    for member in members[1:]:
        if member.metric.inputs != first.metric.inputs:
            raise ConfigError(
                f"a collection's members take the same inputs; {first.name!r} "
                f"({first.class_name}) takes {list(first.metric.inputs)}, {member.name!r} "
                f"({member.class_name}) takes {list(member.metric.inputs)}")


def find_groups(members: list[Member]) -> list[list[str]]:
    """Compute groups among the members' variables that exist now (before any batch): the
    names of variables with equal share keys, shapes, dtypes, aggregations and initial
    values, each group in member order."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for member in members:
        for v in member.metric.variables:
            if v.share_key is None:
                continue
            key = (v.share_key, v.shape, v.dtype, v.aggregation, v.cumulative,
                   v.initial_value.tobytes())
            groups.setdefault(key, []).append(f"{member.name}/{v.name}")
    return [names for names in groups.values() if len(names) > 1]


def build_metric(registry: Registry, metric: str, args: dict[str, Any]) -> tuple[str, Metric]:
    """A session's metric from its stored `metric` and arguments: a collection, or one class
    through the registry. Answers the canonical name and the instance."""
    if metric == COLLECTION:
        return COLLECTION, build_collection(registry, args)
    spec, instance = registry.build(metric, args)
    return spec.name, instance
