"""Request bodies to numpy, without pydantic field-by-field (too slow for 10^6 numbers).

Every body is treated as hostile until bounded:

- JSON is parsed by orjson (strict: UTF-8 only, no lone surrogates, at most 1024 levels of
  nesting). Before parsing an update or merge body, its commas bound the number of values it
  can hold (each value of an array but the last is followed by one), so that a body over the
  element limit is refused before millions of Python objects are built. Bodies on which orjson
  stops at a `NaN`/`Infinity` token or a number beyond float64 (which Python's `json.dumps`
  writes) are parsed again by the standard library only to report them as what they are,
  non-finite input (422), not as broken JSON (400).
- `.npz` archives are never handed to `np.load` whole: the zip central directory is bounded and
  read first, member names are checked, each member's `.npy` header is read with a small bounded
  read, and the element count and each member's declared size are checked against its header
  before a single data byte is decompressed; decompression then stops at the declared size.
  Stored members (np.savez) are not copied at all: their arrays are read-only views of the
  body, found from the member's local file header with every offset bounds-checked, and the
  CRC-32 is checked over the view.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple, TypeVar

import anyio
import numpy as np
import orjson
from starlette.requests import Request

from app.errors import (
    BadRequest,
    InvalidInput,
    PayloadTooLarge,
    TallyError,
    UnsupportedMediaType,
)
from app.parallel import run_split
from app.slicing import MAX_SLICE_TEXT_BYTES

JSON_TYPES = ("application/json",)
NPZ_TYPE = "application/x-npz"
UTF8_CHARSETS = ("utf-8", "utf8")
LIMIT_SETTING = "setting max_batch_elements, env TALLY_MAX_BATCH_ELEMENTS"

#: Array names an `.npz` update may hold (`slice`/`slices` are reserved for sliced metrics).
NPZ_MEMBERS = frozenset({"y_true", "y_pred", "values", "sample_weight", "epoch",
                         "slice", "slices"})
#: The members that may hold text (slice values; see app/slicing.py).
TEXT_MEMBERS = frozenset({"slice", "slices"})
#: The central directory of an archive of a few arrays is well under 1 KiB.
MAX_CENTRAL_DIRECTORY_BYTES = 64 * 1024
#: Magic, version, header length and header of a `.npy` member: np.save writes ~128 bytes.
NPY_HEADER_LIMIT = 4096
MAX_NDIM = 64  # numpy's own limit
NUMERIC_KINDS = "biuf"  # bool, int, uint, float

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_EOCD_SIZE, _EOCD64_LOCATOR_SIZE, _EOCD64_SIZE = 22, 20, 56
_LOCAL_HEADER = b"PK\x03\x04"
_LOCAL_HEADER_SIZE = 30
T = TypeVar("T")

#: What zipfile and zlib raise on malformed archives (RuntimeError: a password is required;
#: NotImplementedError: an unknown compression method).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
                   struct.error, zlib.error, NotImplementedError, RuntimeError, TypeError,
                   KeyError, OverflowError)
_NONFINITE_TOKEN = re.compile(r"-?(?:NaN|Infinity|[0-9][0-9.eE+-]*)")
_add = np.add.reduce  # `ndarray.sum` without its Python-level wrapper (hot path)
_FLOAT_RANGES = {np.dtype(np.float32): "float32 range (about ±3.4e38)",
                 np.dtype(np.float64): "float64 range (about ±1.8e308)"}


# -- the request -----------------------------------------------------------------------------
def media_type(request: Request) -> str:
    return _media_type(request.headers.get("content-type", ""))


def _media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and (
            len(declared) > 19 or int(declared) > limit):
        raise PayloadTooLarge(f"the body is {declared:.30} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(kind: str) -> bool:
    return kind in JSON_TYPES or kind.endswith("+json") or kind == ""


def _check_json_type(content_type: str, expected: str) -> None:
    kind = _media_type(content_type)
    if not _is_json(kind):
        raise UnsupportedMediaType(f"expected Content-Type {expected}; got {kind!r:.100}")
    charset = _charset(content_type)
    if charset is not None and charset not in UTF8_CHARSETS:
        raise UnsupportedMediaType(f"JSON bodies must be UTF-8; got charset={charset!r:.50}")


# -- the element limit -----------------------------------------------------------------------
#: Bodies above this size are decoded in a worker thread, never on the event loop (a 30 MB
#: JSON batch takes a few hundred ms to parse and convert); at most DECODE_THREADS at once,
#: so a burst of large bodies cannot multiply the memory they cost.
OFF_LOOP_BYTES = 1 << 20
DECODE_THREADS = anyio.CapacityLimiter(2)


async def off_loop(size: int, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` inline for a small body, in a decode thread for a large one."""
    if size <= OFF_LOOP_BYTES:
        return work(*args)
    return await anyio.to_thread.run_sync(partial(work, *args), limiter=DECODE_THREADS)


async def decode_arrays(payload: Payload, fields: Mapping[str, Any], max_elements: int, *,
                        label: str = "{}", dtype: type[np.floating[Any]] = np.float32
                        ) -> dict[str, np.ndarray]:
    """`to_arrays` of a payload's fields, off the event loop when the body was large."""
    return await off_loop(payload.size, partial(
        to_arrays, fields, max_elements, label=label, dtype=dtype,
        text_free=payload.text_free))


def check_elements(count: int, limit: int, how: str = "") -> None:
    """413 when a batch holds more array elements than the limit (`how`: how they were
    counted)."""
    if count > limit:
        counted = f" {how}" if how else ""
        raise PayloadTooLarge(f"the batch has {count} array elements{counted}; the limit is "
                              f"{limit} elements per batch ({LIMIT_SETTING})")


def check_json_elements_bound(body: bytes, limit: int) -> None:
    """Refuse, before parsing, a JSON body that may hold more values than the limit.

    In an object whose leaves are numbers, commas = values - 1: each value but the last of an
    array or object is followed by one. So more than `limit` commas means at least `limit`+2
    values, of which at most one (`epoch`) is not an array element. Commas inside strings can
    only make a body that is invalid anyway look larger. One `bytes.count`: microseconds."""
    commas = body.count(b",")
    if commas > limit:
        raise PayloadTooLarge(f"the batch has up to {commas + 1} array elements (its body has "
                              f"{commas} commas, counted before parsing); the limit is {limit} "
                              f"elements per batch ({LIMIT_SETTING})")


# -- JSON ------------------------------------------------------------------------------------
def _json_error(exc: orjson.JSONDecodeError) -> str:
    where = f"{exc.msg} at character {exc.pos}"
    if "UTF-8" in exc.msg or "surrogate" in exc.msg:
        return f"the body is not valid UTF-8 text ({where})"
    if "depth" in exc.msg:
        return f"the body is not valid JSON ({where}: at most 1024 levels of nesting)"
    return f"the body is not valid JSON ({where})"


def _nonfinite_at(text: str, pos: int) -> bool:
    """Whether orjson stopped at `NaN`, `Infinity`, `-Infinity` or a number beyond float64."""
    start = pos - 1 if text[pos - 1:pos] == "-" else pos
    token = _NONFINITE_TOKEN.match(text, start)
    if token is None:
        return False
    if token.group().lstrip("-") in ("NaN", "Infinity"):
        return True
    try:
        return math.isinf(float(token.group()))
    except ValueError:
        return False


def _json_int(digits: str) -> int | float:
    """As orjson: integers beyond 64 bits become floats (here possibly infinite, then 422)."""
    return int(digits) if len(digits) <= 20 else float(digits)


def _parse_with_nonfinite(body: bytes) -> Any:
    """The standard library's parser, which accepts NaN, Infinity and huge numbers, guarded
    against what orjson would have refused: deep nesting, bad UTF-8, lone surrogates."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text, parse_int=_json_int)
        if "\\u" in text:  # a lone surrogate escape cannot be encoded back to UTF-8
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise BadRequest("the body is not valid JSON (nested too deeply)") from None
    except UnicodeEncodeError:
        raise BadRequest("the body is not valid UTF-8 text (it escapes a lone surrogate, "
                         "e.g. \\ud800)") from None
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc})") from None
    return data


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if isinstance(exc.doc, str) and _nonfinite_at(exc.doc, exc.pos):
            return _parse_with_nonfinite(body)
        raise BadRequest(_json_error(exc)) from None


class Payload(NamedTuple):
    """A decoded body: its fields, whether it was an `.npz` archive, and whether its values
    are known to hold no text (then `to_arrays` converts them without looking for any)."""

    fields: dict[str, Any]
    is_npz: bool = False
    text_free: bool = False
    size: int = 0  # the body's bytes: how much decoding work is left (see `decode_arrays`)


def _text_free(body: bytes, data: dict[str, Any]) -> bool:
    """Whether the only strings of the body are the keys of `data` and of its object values.
    Every key and every string has at least two quote characters, so equality rules out any
    string value (and any uncounted key). One `bytes.count`."""
    keys = len(data) + sum(len(value) for value in data.values() if isinstance(value, dict))
    return body.count(b'"') == 2 * keys


async def json_payload(request: Request, limit: int, *, optional: bool = False,
                       max_elements: int | None = None,
                       expected: str = "application/json") -> Payload:
    """A JSON object body; an empty body is `{}` when `optional`. With `max_elements`, a body
    that may hold more values than that is refused (413) before it is parsed."""
    _check_json_type(request.headers.get("content-type", ""), expected)
    body = await read_body(request, limit)
    if optional and not body.strip():
        return Payload({})
    if max_elements is not None:
        check_json_elements_bound(body, max_elements)
    data = await off_loop(len(body), parse_json, body)
    if not isinstance(data, dict):
        raise InvalidInput(f"the body must be a JSON object; got {type(data).__name__}")
    return Payload(data, text_free=_text_free(body, data), size=len(body))


async def json_object(request: Request, limit: int, *, optional: bool = False) -> dict[str, Any]:
    return (await json_payload(request, limit, optional=optional)).fields


async def array_payload(request: Request, limit: int, max_elements: int,
                        members: frozenset[str] = NPZ_MEMBERS) -> Payload:
    """The body of an update: JSON object or `.npz` archive. An archive's element count is
    checked here; a JSON body's exactly by `to_arrays`."""
    if media_type(request) == NPZ_TYPE:
        body = await read_body(request, limit)
        fields = await off_loop(len(body), read_npz, body, max_elements, members)
        return Payload(fields, is_npz=True, text_free=True, size=len(body))
    return await json_payload(request, limit, max_elements=max_elements,
                              expected=f"application/json or {NPZ_TYPE}")


# -- .npz ------------------------------------------------------------------------------------
class NpyHeader(NamedTuple):
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype[Any]
    size: int  # bytes of magic, version and header before the data

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


def _directory_bounds(body: bytes) -> tuple[int, int] | None:
    """(entries, bytes) of the central directory as the end records declare it, found as
    zipfile finds them; None if there is no end record (zipfile then says so)."""
    end = len(body) - _EOCD_SIZE
    if not (end >= 0 and body[end:end + 4] == _EOCD and body[-2:] == b"\0\0"):
        end = body.rfind(_EOCD, max(len(body) - (1 << 16) - _EOCD_SIZE, 0))
        if end < 0 or len(body) - end < _EOCD_SIZE:
            return None
    entries, size = struct.unpack_from("<HI", body, end + 10)
    locator = end - _EOCD64_LOCATOR_SIZE
    record = locator - _EOCD64_SIZE
    if record >= 0 and body[locator:locator + 4] == _EOCD64_LOCATOR \
            and body[record:record + 4] == _EOCD64:
        entries, size = struct.unpack_from("<QQ", body, record + 32)
    return entries, size


def _check_directory(body: bytes, members: frozenset[str]) -> None:
    """zipfile builds one object per directory entry before we can look at any: bound the
    directory it will read first."""
    bounds = _directory_bounds(body)
    if bounds is None:
        return
    entries, size = bounds
    if entries > len(members):
        raise InvalidInput(f"the .npz archive has {entries} members; expected at most "
                           f"{len(members)}, one per array among {sorted(members)}")
    if size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise BadRequest(f"the .npz archive's central directory is {size} bytes; an archive "
                         f"of at most {len(members)} arrays needs under "
                         f"{MAX_CENTRAL_DIRECTORY_BYTES}")


def _array_name(info: zipfile.ZipInfo) -> str | None:
    """`values` for a member `values.npy` (as np.savez names them), else None."""
    return info.filename.removesuffix(".npy") if info.filename.endswith(".npy") else None


def _member_names(infos: list[zipfile.ZipInfo],
                  members: frozenset[str]) -> dict[str, zipfile.ZipInfo]:
    """Array name -> ZipInfo, refusing unknown, duplicate, encrypted or oddly compressed
    members from the central directory alone."""
    unknown = sorted({repr(i.filename)[:80] for i in infos if _array_name(i) not in members})
    if unknown:
        raise InvalidInput(f"the .npz archive has member(s) {', '.join(unknown[:10])} that are "
                           f"not among the accepted arrays {sorted(members)} (each stored as "
                           "<name>.npy, as np.savez writes them); nothing was decompressed")
    by_name = {str(_array_name(info)): info for info in infos}
    if len(by_name) != len(infos):
        names = [_array_name(info) for info in infos]
        twice = sorted({str(n) for n in names if names.count(n) > 1})
        raise InvalidInput(f"the .npz archive holds {twice} more than once; each array must "
                           "appear once")
    for info in infos:
        if info.flag_bits & 0x1:
            raise BadRequest(f"member {info.filename!r} of the .npz archive is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BadRequest(f"member {info.filename!r} of the .npz archive uses compression "
                             f"method {info.compress_type}; expected stored (np.savez) or "
                             "deflated (np.savez_compressed)")
    return by_name


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
                max_elements: int) -> NpyHeader:
    """The `.npy` header of one member, from at most NPY_HEADER_LIMIT decompressed bytes, and
    checked against the member's declared size so that reading it later is bounded."""
    with archive.open(info) as member:
        stream = io.BytesIO(member.read(min(info.file_size, NPY_HEADER_LIMIT)))
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                stream, max_header_size=NPY_HEADER_LIMIT)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                stream, max_header_size=NPY_HEADER_LIMIT)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:  # noqa: BLE001 - numpy runs ast/tokenize on these <= 4 KiB
        raise BadRequest(f"array {name!r} of the .npz archive does not start with a readable "
                         f".npy header of at most {NPY_HEADER_LIMIT} bytes: {exc}") from None
    header = NpyHeader(shape, fortran, dtype, stream.tell())
    _check_npy_header(header, name, max_elements)
    expected = header.size + header.elements * dtype.itemsize
    if info.file_size != expected:
        raise BadRequest(f"array {name!r} of the .npz archive declares {info.file_size} bytes "
                         f"uncompressed; its header (shape {list(shape)}, dtype {dtype}) "
                         f"implies {expected}")
    return header


def _check_npy_header(header: NpyHeader, name: str, max_elements: int) -> None:
    dtype = header.dtype
    if name in TEXT_MEMBERS and dtype.kind == "U" and dtype.fields is None:
        if header.elements * dtype.itemsize > MAX_SLICE_TEXT_BYTES:
            raise PayloadTooLarge(
                f"array {name!r} of the .npz archive holds {header.elements} strings of up to "
                f"{dtype.itemsize // 4} characters, {header.elements * dtype.itemsize} bytes; "
                f"at most {MAX_SLICE_TEXT_BYTES} are accepted (send integer codes instead)")
    elif dtype.kind not in NUMERIC_KINDS or dtype.fields is not None \
            or dtype.subdtype is not None:
        raise BadRequest(f"array {name!r} of the .npz archive is not a numeric array: dtype "
                         f"{str(dtype)[:80]}; expected bool, int, uint or float"
                         + (" (or text, dtype kind U)" if name in TEXT_MEMBERS else ""))
    if len(header.shape) > MAX_NDIM or any(d < 0 for d in header.shape):
        raise BadRequest(f"array {name!r} of the .npz archive has an invalid shape "
                         f"{str(list(header.shape))[:200]}")
    largest = max(header.shape, default=0)
    if header.elements == 0 and largest > max_elements:  # metrics may size work by any axis
        raise PayloadTooLarge(f"array {name!r} of the .npz archive is empty but has a dimension"
                              f" of {largest}; the limit is {max_elements} elements per batch "
                              f"({LIMIT_SETTING})")


class Unchecked(NamedTuple):
    """A stored member read in place whose CRC-32 is still to be checked (`check_crcs`)."""

    name: str
    data: memoryview
    crc: int


def _stored_member(body: bytes, info: zipfile.ZipInfo, name: str,
                   unchecked: list[Unchecked]) -> memoryview:
    """The bytes of a stored (uncompressed) member, as a view of the body: past its local file
    header (signature, then name and extra lengths at +26 and +28, the name itself at +30),
    every offset checked against the body; its CRC is added to `unchecked`."""
    start = info.header_offset
    if start < 0 or start + _LOCAL_HEADER_SIZE > len(body) \
            or body[start:start + 4] != _LOCAL_HEADER:
        raise BadRequest(f"array {name!r} of the .npz archive has no local file header at "
                         f"offset {start}, where the central directory puts it")
    name_size, extra_size = struct.unpack_from("<HH", body, start + 26)
    begin = start + _LOCAL_HEADER_SIZE
    if body[begin:begin + name_size] != info.orig_filename.encode("utf-8"):
        raise BadRequest(f"array {name!r} of the .npz archive: the member name of its local "
                         "header differs from the central directory's")
    begin += name_size + extra_size
    size = info.file_size
    if info.compress_size != size:
        raise BadRequest(f"array {name!r} of the .npz archive is stored uncompressed but "
                         f"declares {info.compress_size} bytes stored for {size} bytes of data")
    if begin + size > len(body):
        raise BadRequest(f"array {name!r} of the .npz archive is truncated: its {size} bytes "
                         f"would end at offset {begin + size}; the body has {len(body)}")
    member = memoryview(body)[begin:begin + size]
    unchecked.append(Unchecked(name, member, info.CRC))
    return member


#: Bodies this large have their members' CRCs computed at the same time (app/parallel.py).
PARALLEL_CRC_BYTES = 1 << 20


def check_crcs(members: list[Unchecked]) -> None:
    """Each member's CRC-32 against the archive's (400 naming the first that differs)."""
    calls = [partial(zlib.crc32, m.data) for m in members]
    large = sum(len(m.data) for m in members) >= PARALLEL_CRC_BYTES
    crcs = run_split(calls) if large else [call() for call in calls]
    for member, crc in zip(members, crcs, strict=True):
        if crc != member.crc:
            raise BadRequest(f"Bad CRC-32 for array {member.name!r} of the .npz archive: its "
                             "bytes are not the ones the archive declares")


def _stored_data(body: bytes, info: zipfile.ZipInfo, header: NpyHeader,
                 name: str, unchecked: list[Unchecked]) -> np.ndarray:
    """The data of a stored member read in place: np.frombuffer on the body, without the
    copy `ZipExtFile.read` makes (8 MB for a 1M-sample batch). The array is read-only, as
    arrays over the bytes `read` returns always were; unaligned data (a float64 member at an
    odd offset) is copied, so that numpy's loops never see it."""
    wanted = header.elements * header.dtype.itemsize
    data = _stored_member(body, info, name, unchecked)[header.size:]
    if len(data) != wanted:  # _npy_header checked the sizes; this keeps the read exact anyway
        raise BadRequest(f"array {name!r} of the .npz archive is truncated: {len(data)} of "
                         f"{wanted} data bytes")
    array = np.frombuffer(data, dtype=header.dtype)
    if not array.flags.aligned:
        array = array.copy()
    return array.reshape(header.shape, order="F" if header.fortran_order else "C")


def _npy_data(body: bytes, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
              header: NpyHeader, name: str, unchecked: list[Unchecked]) -> np.ndarray:
    """The member's array: in place for a stored member (its CRC left in `unchecked`); for a
    deflated one, exactly the declared bytes are decompressed (then CRC-checked)."""
    if info.compress_type == zipfile.ZIP_STORED:
        return _stored_data(body, info, header, name, unchecked)
    wanted = header.elements * header.dtype.itemsize
    with archive.open(info) as member:
        member.read(header.size)
        data = member.read(wanted)
    if len(data) != wanted:
        raise BadRequest(f"array {name!r} of the .npz archive is truncated: {len(data)} of "
                         f"{wanted} data bytes")
    array = np.frombuffer(data, dtype=header.dtype)
    return array.reshape(header.shape, order="F" if header.fortran_order else "C")


def read_npz(body: bytes, max_elements: int,
             members: frozenset[str] = NPZ_MEMBERS) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` body, checked before anything is decompressed: member names
    (422), dtypes (400), total elements from the headers (413) and declared sizes (400)."""
    try:
        _check_directory(body, members)
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            infos = _member_names(archive.infolist(), members)
            headers = {name: _npy_header(archive, info, name, max_elements)
                       for name, info in infos.items()}
            check_elements(sum(h.elements for h in headers.values()), max_elements,
                           "in the .npz archive (counted from the array headers before "
                           "decompressing)")
            unchecked: list[Unchecked] = []
            arrays = {name: _npy_data(body, archive, infos[name], header, name, unchecked)
                      for name, header in headers.items()}
            check_crcs(unchecked)
            return arrays
    except TallyError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise BadRequest(f"the body is not a readable .npz archive (as np.savez writes): "
                         f"{str(exc)[:200]}") from None


# -- arrays ----------------------------------------------------------------------------------
def _nonfinite(what: str, dtype: np.dtype[Any]) -> InvalidInput:
    return InvalidInput(f"{what} contains NaN or infinity or a number beyond "
                        f"{_FLOAT_RANGES.get(dtype, str(dtype))}; every value must be finite")


def _from_objects(source: np.ndarray, what: str, dtype: np.dtype[Any]) -> np.ndarray:
    """An object array (JSON null, or integers beyond 64 bits): numbers and nulls only."""
    kinds = set(map(type, source.flat))
    others = sorted(k.__name__ for k in kinds - {int, float, bool, type(None)})
    if others:
        raise BadRequest(f"{what} must be a nested list of numbers (or true/false); got "
                         f"values of type {', '.join(others)}")
    try:
        return np.asarray(source.tolist(), dtype=np.float64)
    except OverflowError:
        raise _nonfinite(what, dtype) from None


def _from_json(value: Any, what: str, target: np.dtype[Any], text_free: bool) -> np.ndarray:
    if isinstance(value, str) or value is None or isinstance(value, dict):
        raise BadRequest(f"{what} must be a number or a nested list of numbers; "
                         f"got {type(value).__name__}")
    try:
        if text_free:  # the fast path: no dtype discovery
            return np.asarray(value, dtype=target)
        source = np.asarray(value)
    except OverflowError:  # an integer beyond float64, from the standard library's parser
        raise _nonfinite(what, target) from None
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{what} must be a rectangular nested list of numbers "
                         f"({str(exc)[:200]})") from None
    return _from_objects(source, what, target) if source.dtype.kind == "O" else source


def to_array(value: Any, what: str, dtype: type[np.floating[Any]] = np.float32, *,
             text_free: bool = False) -> np.ndarray:
    """A nested list, number or npz array as a finite float array. What cannot be decoded into
    a numeric array at all (strings, objects, ragged lists) is a 400; NaN/inf is a 422.
    Booleans are numbers (true = 1, false = 0), as Keras accepts bool tensors. `text_free`:
    the caller knows there are no strings in `value` (see `Payload`)."""
    target = np.dtype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 is inf, then a 422
        source = value if isinstance(value, np.ndarray) else _from_json(value, what, target,
                                                                        text_free)
        if source.dtype.kind not in NUMERIC_KINDS:
            got = "text" if source.dtype.kind in "US" else f"dtype {source.dtype}"
            raise BadRequest(f"{what} must be numeric (numbers or true/false); got {got}")
        array = source.astype(target, copy=False)
        # A finite sum means every value is finite (NaN and inf reach the sum), in one pass
        # on a small batch's hot path; a sum that overflowed is checked value by value.
        finite = math.isfinite(_add(array, None)) or bool(np.isfinite(array).all())
    if not finite:
        raise _nonfinite(what, target)
    return array


def to_arrays(fields: Mapping[str, Any], max_elements: int, *, label: str = "{}",
              dtype: type[np.floating[Any]] = np.float32,
              text_free: bool = False) -> dict[str, np.ndarray]:
    """Each field as an array (`label` formats the field name for messages), then the exact
    total of elements checked against the limit (413)."""
    arrays = {name: to_array(value, label.format(name), dtype, text_free=text_free)
              for name, value in fields.items()}
    check_elements(sum(a.size for a in arrays.values()), max_elements)
    return arrays
