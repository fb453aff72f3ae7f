"""Hostile `.npz` update bodies: bounded before anything is decompressed, every refusal a 4xx
problem whose detail says what was expected and what was received, and the store unchanged."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api import codecs
from app.api.app import create_app
from app.parallel import run_split
from app.settings import Settings
from tests.cases import CASES, batches
from tests.oracle import assert_close, json_array, keras_metric, keras_update
from tests.test_api_errors import assert_problem

ELEMENTS = 1000  # max_batch_elements of these tests
NPZ = "application/x-npz"


@pytest.fixture
def client(api_store):
    settings = Settings(max_body_bytes=400_000, max_batch_elements=ELEMENTS)
    with TestClient(create_app(settings, store=api_store)) as c:
        c.put("/v1/sessions/m", json={"metric": "Mean"})
        c.put("/v1/sessions/p", json={"metric": "Precision"})
        c.post("/v1/sessions/m/update", json={"values": [1.0, 2.0]})
        yield c


def state(client):
    return [(client.get(f"/v1/sessions/{n}").json(), client.get(f"/v1/sessions/{n}/variables")
             .json()) for n in ("m", "p")]


@pytest.fixture
def inflated(monkeypatch):
    """Counts the bytes zipfile decompresses (what a decompression bomb would cost)."""
    counter = {"bytes": 0}
    original = zipfile.ZipExtFile._read1

    def counting(self, n):
        data = original(self, n)
        counter["bytes"] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "_read1", counting)
    return counter


def savez(compressed=False, **arrays):
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def archive(members, compression=zipfile.ZIP_STORED):
    """A zip of (member name, bytes) pairs, duplicates allowed."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name"
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


def central_entry(body, index=0):
    """Offset of the index-th central directory entry."""
    at = -1
    for _ in range(index + 1):
        at = body.index(b"PK\x01\x02", at + 1)
    return at


def patch(body, offset, fmt, value):
    out = bytearray(body)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def post(client, body, path="m", content_type=NPZ, query=""):
    return client.post(f"/v1/sessions/{path}/update{query}", content=body,
                       headers={"Content-Type": content_type})


# -- the decompression bomb and the element limit -------------------------------------------
def test_bomb_under_an_unknown_name_is_refused_before_decompressing(client, inflated):
    before = state(client)
    body = savez(compressed=True, junk=np.zeros(20_000_000, np.int8))
    assert len(body) < 400_000  # it passes the byte limit: only its content can be refused
    assert_problem(post(client, body), 422, "'junk.npy'", "y_true", "values", "slices")
    assert inflated["bytes"] == 0
    assert state(client) == before


def test_bomb_under_an_allowed_name_is_refused_from_its_header(client, inflated):
    before = state(client)
    body = savez(compressed=True, values=np.zeros(20_000_000, np.int8))
    assert_problem(post(client, body), 413, "20000000", str(ELEMENTS), "max_batch_elements",
                   "TALLY_MAX_BATCH_ELEMENTS", "before decompressing")
    assert 0 < inflated["bytes"] <= codecs.NPY_HEADER_LIMIT
    assert state(client) == before


def test_elements_are_counted_over_all_arrays(client):
    before = state(client)
    half = ELEMENTS // 2 + 1
    body = savez(y_true=np.ones(half), y_pred=np.ones(half), sample_weight=np.ones(half))
    assert_problem(post(client, body, "p"), 413, str(3 * half), str(ELEMENTS))
    assert state(client) == before


def test_exactly_the_limit_is_accepted(client):
    values = np.arange(ELEMENTS, dtype=np.float32)
    r = post(client, savez(compressed=True, values=values))
    assert r.status_code == 200, r.text
    expected = (1.0 + 2.0 + values.sum()) / (2 + ELEMENTS)
    assert client.get("/v1/sessions/m/result").json()["result"] == pytest.approx(expected)


def test_a_zero_size_array_with_a_huge_dimension_is_refused(client):
    before = state(client)
    header = npy(np.zeros((0, 4)))
    shape = header.replace(b"(0, 4)", b"(0, 10000000000)")
    assert_problem(post(client, archive([("values.npy", shape)])), 413, "10000000000",
                   str(ELEMENTS))
    assert state(client) == before


# -- not an archive, or not one we accept ---------------------------------------------------
@pytest.mark.parametrize("body", [
    b"", b"garbage", b"PK\x03\x04garbage", b"PK\x05\x06" + b"\0" * 17,
    npy(np.arange(3.0)),  # a bare .npy is not an archive
    b'{"values": [1]}',
], ids=["empty", "garbage", "local-header-only", "short-end-record", "raw-npy", "json"])
def test_400_not_a_zip(client, body):
    before = state(client)
    assert_problem(post(client, body), 400, ".npz")
    assert state(client) == before


@pytest.mark.parametrize(("members", "fragments"), [
    ([("values", npy(np.ones(2)))], ["'values'", "<name>.npy"]),  # no .npy suffix
    ([("values.npy", npy(np.ones(2))), ("dir/", b"")], ["'dir/'"]),
    ([("values.npy", npy(np.ones(2))), ("values.npy", npy(np.ones(3)))],
     ["'values'", "more than once"]),
    ([(f"values{i}.npy", npy(np.ones(1))) for i in range(8)], ["8 members", "at most 7"]),
])
def test_422_unknown_duplicate_or_too_many_members(client, members, fragments):
    before = state(client)
    assert_problem(post(client, archive(members)), 422, *fragments)
    assert state(client) == before


def test_an_empty_archive_is_an_update_without_arrays(client):
    before = state(client)
    assert_problem(post(client, b"PK\x05\x06" + b"\0" * 18), 422, "y_true", "values")
    assert state(client) == before


def test_slice_members_pass_the_archive_and_are_checked_by_the_update(client):
    before = state(client)
    body = savez(values=np.ones(2), slice=np.zeros(2))
    assert_problem(post(client, body), 422, "'slice' must be", "got array")
    body = savez(values=np.ones(2), slices=np.array([0.5, 1.5]))
    assert_problem(post(client, body), 422, "'slices'", "dtype float64")
    body = savez(values=np.ones(2), slices=np.array(["a", "b"]))
    assert_problem(post(client, body), 422, "created without slices")
    assert state(client) == before


@pytest.mark.parametrize("array", [
    np.array(["a", "b"]), np.array([b"a"]), np.array([1 + 2j]), np.array([object()]),
    np.array(["2020-01-01"], dtype="datetime64[D]"), np.array([1], dtype="timedelta64[s]"),
    np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), np.zeros(2, dtype="V8"),
], ids=["str", "bytes", "complex", "object", "datetime", "timedelta", "structured", "void"])
def test_400_not_a_numeric_array(client, array, inflated):
    before = state(client)
    body = archive([("values.npy", npy(array))])
    assert_problem(post(client, body), 400, "not a numeric array", "values", "dtype")
    assert inflated["bytes"] <= codecs.NPY_HEADER_LIMIT
    assert state(client) == before


@pytest.mark.parametrize("dtype", ["bool", "int8", "uint64", ">i4", "float16", ">f8",
                                   "float32"])
def test_numeric_dtypes_and_byte_orders_are_accepted(client, dtype):
    values = np.array([1, 0, 1, 1], dtype=dtype)
    assert post(client, savez(values=values)).status_code == 200
    expected = (1.0 + 2.0 + values.astype(np.float64).sum()) / (2 + len(values))
    assert client.get("/v1/sessions/m/result").json()["result"] == pytest.approx(expected)


def test_fortran_order_is_decoded_as_such(client):
    y_true = np.asfortranarray([[1, 0, 1], [0, 1, 1]])
    y_pred = np.asfortranarray([[0.9, 0.8, 0.2], [0.7, 0.4, 0.6]])
    assert post(client, savez(y_true=y_true, y_pred=y_pred), "p").status_code == 200
    true_positives = int(np.sum((y_pred > 0.5) & (y_true == 1)))
    predicted = int(np.sum(y_pred > 0.5))
    # the session already saw y_true [1, 0] and y_pred [0.9, 0.8]: tp 1 of 2 predicted
    assert client.get("/v1/sessions/p/result").json()["result"] == pytest.approx(
        (1 + true_positives) / (2 + predicted))


def test_epoch_member_is_a_precondition(client):
    before = state(client)
    assert_problem(post(client, savez(values=np.ones(1), epoch=np.int64(3))), 409, "epoch 3")
    assert_problem(post(client, savez(values=np.ones(1), epoch=np.float64(0))), 422, "epoch")
    assert_problem(post(client, savez(values=np.ones(1), epoch=np.uint64(2**53))), 422,
                   "epoch", str(2**53 - 1))
    assert state(client) == before
    assert post(client, savez(values=np.ones(1), epoch=np.int64(0))).status_code == 200


@pytest.mark.parametrize("content_type", ["application/x-npz; charset=binary",
                                          "Application/X-NPZ", " application/x-npz ;q=1"])
def test_content_type_variants(client, content_type):
    assert post(client, savez(values=np.ones(2)), content_type=content_type).status_code == 200


# -- archives that lie ----------------------------------------------------------------------
def test_400_declared_size_larger_than_the_header_implies(client, inflated):
    """A member that would inflate to more than its header says is refused unread."""
    before = state(client)
    body = savez(compressed=True, values=np.ones(10))
    declared = len(npy(np.ones(10)))
    lying = patch(body, central_entry(body) + 24, "<I", declared + 10_000_000)
    assert_problem(post(client, lying), 400, "values", str(declared + 10_000_000),
                   str(declared))
    assert inflated["bytes"] <= codecs.NPY_HEADER_LIMIT
    assert state(client) == before


def test_400_declared_size_smaller_than_the_header_implies(client):
    before = state(client)
    body = savez(values=np.ones(10))
    declared = len(npy(np.ones(10)))
    lying = patch(body, central_entry(body) + 24, "<I", declared - 8)
    # a member this small is read whole with its header: zipfile's CRC check finds the lie
    assert_problem(post(client, lying), 400, "values", "CRC")
    assert state(client) == before


def test_400_header_larger_than_its_data(client):
    """Header and declared size agree on 1000 elements; the stream holds 10."""
    before = state(client)
    header = npy(np.ones(10)).replace(b"(10,)", b"(999,)")
    body = archive([("values.npy", header)])
    size = len(header) + 989 * 8
    lying = patch(body, central_entry(body) + 24, "<I", size)
    assert_problem(post(client, lying), 400, ".npz")
    assert state(client) == before


@pytest.mark.parametrize("compressed_size", [0, 5])
def test_400_compressed_size_smaller_than_the_stream(client, compressed_size):
    before = state(client)
    body = savez(compressed=True, values=np.ones(10))
    lying = patch(body, central_entry(body) + 20, "<I", compressed_size)
    assert_problem(post(client, lying), 400, ".npz")
    assert state(client) == before


@pytest.mark.parametrize("compressed_size", [10**6, 2**32 - 1])
def test_compressed_size_larger_than_the_stream_is_harmless(client, compressed_size):
    """The deflate stream ends by itself, the output stops at the declared (checked) size and
    the CRC holds: the data is what the header says."""
    body = savez(compressed=True, values=np.full(10, 4.0))
    lying = patch(body, central_entry(body) + 20, "<I", compressed_size)
    assert post(client, lying).status_code == 200
    assert client.get("/v1/sessions/m/result").json()["result"] == pytest.approx(43 / 12)


def test_400_crc_mismatch(client):
    before = state(client)
    body = bytearray(savez(values=np.ones(10)))
    body[body.index(b"\x00\x00\xf0\x3f")] ^= 0xFF  # a data byte of the stored member
    assert_problem(post(client, bytes(body)), 400, "CRC")
    assert state(client) == before


def test_400_encrypted_and_exotic_compression(client):
    before = state(client)
    body = savez(values=np.ones(10))
    flags = central_entry(body) + 8
    assert_problem(post(client, patch(body, flags, "<H", 1)), 400, "encrypted")
    bzip = archive([("values.npy", npy(np.ones(10)))], zipfile.ZIP_BZIP2)
    assert_problem(post(client, bzip), 400, "compression method 12", "deflated")
    assert state(client) == before


@pytest.mark.parametrize(("header", "fragment"), [
    (b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31), "header"),  # a 2 GiB header
    (b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b" " * 60000, "header"),
    (b"\x93NUMPY\x09\x00", "version"),
    (b"NOTNUMPY", "header"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'}", "header"),
    (b"\x93NUMPY\x01\x00\x40\x00{'descr': '<f8', 'fortran_order': False, 'shape': (-5,), }   "
     b"          \n", "shape"),
    (b"\x93NUMPY\x01\x00\x40\x00" + b"(" * 63 + b"\n", "header"),
])
def test_400_unreadable_npy_header(client, header, fragment, inflated):
    before = state(client)
    assert_problem(post(client, archive([("values.npy", header)], zipfile.ZIP_DEFLATED)), 400,
                   "values", fragment)
    assert inflated["bytes"] <= codecs.NPY_HEADER_LIMIT
    assert state(client) == before


# -- the central directory ------------------------------------------------------------------
def as_zip64(body):
    """The same archive with ZIP64 end records (entries and sizes in the 64-bit record)."""
    end = body.rindex(b"PK\x05\x06")
    entries, size, offset = struct.unpack_from("<HII", body, end + 10)
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size,
                         offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                       0xFFFFFFFF, 0)
    return body[:end] + record + locator + eocd


def test_zip64_end_records_are_read(client):
    assert post(client, as_zip64(savez(values=np.ones(3)))).status_code == 200
    assert client.get("/v1/sessions/m/variables").json()["variables"][1]["value"] == 5


def test_central_directory_that_claims_many_entries(client, inflated):
    before = state(client)
    body = as_zip64(savez(values=np.ones(3)))
    end = body.rindex(b"PK\x06\x06")
    many = patch(patch(body, end + 24, "<Q", 10**9), end + 32, "<Q", 10**9)
    assert_problem(post(client, many), 422, "1000000000 members", "at most 7")
    huge = patch(body, end + 40, "<Q", 2**40)
    assert_problem(post(client, huge), 400, "central directory", str(2**40))
    plain = savez(values=np.ones(3))
    end = plain.rindex(b"PK\x05\x06")
    assert_problem(post(client, patch(plain, end + 10, "<H", 9)), 422, "9 members")
    assert_problem(post(client, patch(plain, end + 12, "<I", 10**6)), 400, str(10**6))
    assert inflated["bytes"] == 0
    assert state(client) == before


def test_a_directory_of_many_tiny_entries_is_refused_before_zipfile_reads_it(client,
                                                                            monkeypatch):
    before = state(client)
    body = archive([(f"{i}.npy", b"") for i in range(3000)])
    assert len(body) < 400_000

    def unreachable(*_args, **_kw):
        raise AssertionError("zipfile parsed the directory")

    monkeypatch.setattr(codecs.zipfile, "ZipFile", unreachable)
    assert_problem(post(client, body), 422, "3000 members")
    assert state(client) == before


def test_archive_with_a_comment_and_leading_bytes(client):
    body = savez(values=np.ones(2))
    commented = body[:-2] + struct.pack("<H", 5) + b"hello"
    assert post(client, commented).status_code == 200
    assert post(client, b"#!prefix" + body).status_code == 200  # as zipfile reads them
    assert client.get("/v1/sessions/m/variables").json()["variables"][1]["value"] == 6


# -- stored members are read in place --------------------------------------------------------
def body_bytes(body):
    return np.frombuffer(body, np.uint8)


def test_stored_arrays_are_read_only_views_of_the_body():
    """No copy of a stored member's data: the arrays are views of the body, read-only as
    arrays over the bytes zipfile returns always were. Deflated members are decompressed."""
    y_true, y_pred = np.array([1, 0, 1], np.float32), np.array([0.9, 0.2, 0.4], np.float32)
    body = savez(y_true=y_true, y_pred=y_pred)
    arrays = codecs.read_npz(body, ELEMENTS)
    np.testing.assert_array_equal(arrays["y_true"], y_true)
    np.testing.assert_array_equal(arrays["y_pred"], y_pred)
    for array in arrays.values():
        assert np.shares_memory(array, body_bytes(body)) and not array.flags.writeable
    packed = savez(compressed=True, y_true=y_true, y_pred=y_pred)
    decompressed = codecs.read_npz(packed, ELEMENTS)
    assert not np.shares_memory(decompressed["y_pred"], body_bytes(packed))
    np.testing.assert_array_equal(decompressed["y_pred"], y_pred)


def test_unaligned_stored_data_is_copied_aligned():
    """A float64 member at an offset that is not a multiple of 8 (a longer member name
    before it shifts it) decodes to the same, aligned values."""
    first = npy(np.ones(3, np.float32))
    values = np.arange(5, dtype=np.float64) / 3
    for junk in range(8):
        body = archive([("y_true.npy", first + b""), ("y_pred.npy", npy(values))])
        body = b"#" * junk + body  # leading bytes move every member (zipfile allows them)
        arrays = codecs.read_npz(body, ELEMENTS)
        assert arrays["y_pred"].flags.aligned
        np.testing.assert_array_equal(arrays["y_pred"], values)


def local_header(body, index=0):
    at = -1
    for _ in range(index + 1):
        at = body.index(b"PK\x03\x04", at + 1)
    return at


def test_400_stored_member_whose_local_header_lies(client):
    before = state(client)
    body = savez(values=np.ones(10))
    at = local_header(body)
    no_signature = body[:at] + b"XX\x03\x04" + body[at + 4:]
    assert_problem(post(client, no_signature), 400, ".npz")
    other_name = body.replace(b"values.npy", b"valuez.npy", 1)  # the local copy only
    assert_problem(post(client, other_name), 400, ".npz")
    long_extra = patch(body, at + 28, "<H", 60_000)  # data would start past the body
    assert_problem(post(client, long_extra), 400, ".npz")
    stored_size = patch(body, central_entry(body) + 20, "<I", len(npy(np.ones(10))) + 4)
    assert_problem(post(client, stored_size), 400, "values")
    assert state(client) == before


def test_400_crc_mismatch_of_a_large_stored_member(client):
    """Large enough that the header read does not reach the end of the member: the CRC is
    checked over the data read in place."""
    before = state(client)
    body = bytearray(savez(values=np.ones(ELEMENTS)))
    body[-200] ^= 0x01  # in the data of the only member, before the central directory
    assert body.rindex(b"PK\x01\x02") > len(body) - 200
    assert_problem(post(client, bytes(body)), 400, "CRC", "values")
    assert state(client) == before


@pytest.mark.parametrize("bad", ["y_true", "y_pred", "sample_weight"])
def test_400_crc_mismatch_names_the_member_when_members_are_checked_at_once(api_store,
                                                                            monkeypatch, bad):
    """Large bodies have their members' CRCs computed on two threads (app/parallel.py): the
    one whose bytes were changed is named, whichever thread computed it, and nothing lands.
    Members of 80 KB: zipfile's own header read stops far before their end."""
    monkeypatch.setattr(codecs, "PARALLEL_CRC_BYTES", 1)
    split = []
    monkeypatch.setattr(codecs, "run_split", lambda calls: split.append(len(calls)) or
                        run_split(calls))
    settings = Settings(max_body_bytes=1_000_000, max_batch_elements=30_000)
    with TestClient(create_app(settings, store=api_store)) as client:
        client.put("/v1/sessions/p", json={"metric": "Precision"})
        crc_mismatch_changes_nothing(client, bad, split)


def crc_mismatch_changes_nothing(client, bad, split):
    before = client.get("/v1/sessions/p/variables").json()
    arrays = {"y_true": np.ones(10_000), "y_pred": np.full(10_000, 0.75),
              "sample_weight": np.full(10_000, 2.0)}
    body = bytearray(savez(**arrays))
    with zipfile.ZipFile(io.BytesIO(bytes(body))) as archive:
        info = archive.getinfo(f"{bad}.npy")
    name_size, extra_size = struct.unpack_from("<HH", body, info.header_offset + 26)
    last = info.header_offset + 30 + name_size + extra_size + info.file_size - 1
    body[last] ^= 0x40  # the last data byte of that member
    assert_problem(post(client, bytes(body), path="p"), 400, "CRC", repr(bad))
    assert split == [3]
    assert client.get("/v1/sessions/p/variables").json() == before
    assert post(client, savez(**arrays), path="p").status_code == 200
    assert client.get("/v1/sessions/p/variables").json() != before


def float32_batch(batch):
    return {k: np.asarray(v, dtype=np.float32) for k, v in batch.items()}


@pytest.mark.parametrize(("metric", "config", "kind"), CASES,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_npz_in_place_arrays_give_the_json_and_keras_results(client, metric, config, kind):
    """Every catalogue metric takes the read-only float32 views of an `.npz` body (nothing
    writes into its inputs) and ends where the same batches as JSON, and Keras, end."""
    index = CASES.index((metric, config, kind))
    reference = keras_metric(metric, config)
    for name in ("json", "npz"):
        created = client.put(f"/v1/sessions/{name}", json={"metric": metric, "config": config})
        assert created.status_code == 201, created.text
    for batch in map(float32_batch, batches(kind, seed=index, count=4)):
        keras_update(reference, batch)
        as_json = client.post("/v1/sessions/json/update",
                              json={k: v.tolist() for k, v in batch.items()})
        assert as_json.status_code == 200, as_json.text
        assert post(client, savez(**batch), "npz").status_code == 200
    json_variables = client.get("/v1/sessions/json/variables").json()["variables"]
    npz_variables = client.get("/v1/sessions/npz/variables").json()["variables"]
    assert npz_variables == json_variables
    result = client.get("/v1/sessions/npz/result").json()["result"]
    assert result == client.get("/v1/sessions/json/result").json()["result"]
    assert_close(json_array(result), np.asarray(reference.result()), f"{metric} result")
