"""Every Redis key Tally uses, and the only place that formats them.

All keys of one session share the hash tag `{<name>}`, so one Lua script can touch them all,
also on Redis Cluster. Session names cannot contain braces (see the name rule), so the tag is
always exactly the name.
"""

from __future__ import annotations

from collections.abc import Callable

PREFIX = "tally"
INDEX = f"{PREFIX}:index"  # sorted set of session names (all scores 0: ordered by name)


def around_name(key_of: Callable[[str], str]) -> tuple[str, str]:
    """What a session's key has before and after its name (a script that composes the keys
    of many sessions from their names, `read_many.lua`, is given these)."""
    before, _, after = key_of("\n").partition("\n")  # a name never holds a newline
    return before, after


def _tag(name: str) -> str:
    return f"{PREFIX}:{{{name}}}"


def meta(name: str) -> str:
    return f"{_tag(name)}:meta"


def state(name: str) -> str:
    """String: the sum space, one little-endian float64 per element (see store/state.py)."""
    return f"{_tag(name)}:state"


def extremes(name: str) -> str:
    """String: the extreme space, 9 bytes per element (a set flag, then a float64)."""
    return f"{_tag(name)}:ext"


def version(name: str) -> str:
    """String: "<id> <v> <epoch> <flags>", what a listing asks of a session it knows (is the
    state still the one it has a result of?), in one GET instead of an HMGET of the meta
    (from Lua: ~1 against ~2.3 us, and a page reads a thousand). A copy of the meta's `id`,
    `v` and `epoch`, written with them by create.lua, apply.lua and reset.lua; flags: `L`
    the meta has a layout, `X` the session has written extremes (else `ext` is empty). A
    session written before the key existed has none until its next write: a listing then
    reads the meta."""
    return f"{_tag(name)}:ver"


def history(name: str) -> str:
    """Hash: closed epoch -> its raw state or, once compacted, its result."""
    return f"{_tag(name)}:history"


def idempotency(name: str) -> str:
    """Hash: idempotency key -> the first answer ("<fingerprint> <epoch> <samples>")."""
    return f"{_tag(name)}:idem"


def idempotency_expiry(name: str) -> str:
    """Sorted set: idempotency key -> expiry time in ms, to purge the hash without KEYS."""
    return f"{_tag(name)}:idemx"


def slice_slots(name: str) -> str:
    """Hash: slice value -> its slot k (0, 1, ...) in the current epoch, in order of arrival."""
    return f"{_tag(name)}:slices"


def slice_sums(name: str) -> str:
    """String: every slice's sum space, slot k at k x the meta's `ss` elements (as `state`)."""
    return f"{_tag(name)}:slsum"


def slice_extremes(name: str) -> str:
    """String: every slice's extreme space, slot k at k x the meta's `se` elements."""
    return f"{_tag(name)}:slext"


def window_prefix(name: str) -> str:
    """Prefix of a windowed session's bucket strings: `<prefix><id>:<bucket index>` holds
    that bucket's sums, packed as `state` is. The scripts append the id and the index (the
    session's incarnation, so a re-created session never reads its predecessor's buckets);
    each bucket EXPIREs by itself once no window can reach it. Same hash tag as the rest."""
    return f"{_tag(name)}:win:"


def window_bucket(name: str, session_id: str, index: int) -> str:
    return f"{window_prefix(name)}{session_id}:{index}"


def session_keys(name: str) -> list[str]:
    """The ten keys of a session, in the order every Lua script expects them."""
    return [meta(name), state(name), extremes(name), history(name), idempotency(name),
            idempotency_expiry(name), slice_slots(name), slice_sums(name), slice_extremes(name),
            version(name)]
