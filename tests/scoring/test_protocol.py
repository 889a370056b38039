"""The wire format over real pipes: round trips, partial reads and writes, hostile frames."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from autoresearch.scoring import ModelClient, ModelServerError, connect_models, serve
from autoresearch.scoring.client import parse_model_fds
from autoresearch.scoring.protocol import (
    MAGIC,
    MAX_HEADER,
    PREFIX,
    ProtocolError,
    read_frame,
    read_header,
    write_frame,
)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def in_thread(fn: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def raw_frame(header: dict | bytes, body: bytes = b"") -> bytes:
    data = header if isinstance(header, bytes) else json.dumps(header).encode()
    return PREFIX.pack(MAGIC, len(data)) + data + body


def test_round_trip_of_arrays_larger_than_the_pipe(pipe) -> None:
    r, w = pipe
    tokens = np.arange(3 * 5, dtype=np.int64).reshape(3, 5)
    logits = np.random.default_rng(0).normal(size=(4, 64, 1000)).astype(np.float32)  # 1 MB
    big_endian = tokens.astype(">i8")

    def send() -> None:
        write_frame(w, "tokens", tokens)
        write_frame(w, "logits", logits)
        write_frame(w, "tokens", big_endian)  # converted to the wire's little-endian
        write_frame(w, "logits", np.zeros((2, 0, 3), np.float32))  # an empty body
        os.close(w)

    thread = in_thread(send)
    frames = []
    while (frame := read_frame(r, logits.nbytes)) is not None:
        frames.append(frame)
    thread.join()
    assert [op for op, _ in frames] == ["tokens", "logits", "tokens", "logits"]
    assert np.array_equal(frames[0][1], tokens) and frames[0][1].dtype == np.int64
    assert np.array_equal(frames[1][1], logits) and frames[1][1].dtype == np.float32
    assert np.array_equal(frames[2][1], tokens)
    assert frames[3][1].shape == (2, 0, 3)


def test_a_frame_trickling_in_byte_by_byte_is_reassembled(pipe) -> None:
    r, w = pipe
    array = np.arange(10, dtype=np.float32).reshape(2, 5)
    data = raw_frame({"op": "logits", "shape": [2, 5], "dtype": "float32"}, array.tobytes())

    def trickle() -> None:
        for i in range(len(data)):
            os.write(w, data[i:i + 1])
            if i % 7 == 0:
                time.sleep(0.001)  # the reader wakes with whatever has arrived

    thread = in_thread(trickle)
    frame = read_frame(r, 1024)
    thread.join()
    assert frame is not None and np.array_equal(frame[1], array)


@pytest.mark.parametrize("cut", [2, PREFIX.size + 5, PREFIX.size + 60])
def test_eof_inside_a_frame_is_an_error_and_at_a_boundary_is_the_end(pipe, cut) -> None:
    r, w = pipe
    data = raw_frame({"op": "tokens", "shape": [4], "dtype": "int64"}, bytes(32))
    os.write(w, data[:cut])
    os.close(w)
    with pytest.raises(ProtocolError, match="the pipe closed inside a"):
        read_frame(r, 1024)
    r2, w2 = os.pipe()
    os.close(w2)
    assert read_frame(r2, 1024) is None
    os.close(r2)


@pytest.mark.parametrize("data, message", [
    (b"GET / HTTP/1.1\r\n\r\n", "not a frame"),
    (PREFIX.pack(MAGIC, MAX_HEADER + 1), "header of 65537 bytes"),
    (raw_frame(b"{not json"), "unreadable frame header"),
    (raw_frame({"op": "tokens", "shape": [1]}), "unreadable frame header"),
    (raw_frame({"op": "exec", "shape": [1], "dtype": "int64"}), "unknown op"),
    (raw_frame({"op": "logits", "shape": [1], "dtype": "object"}), "unsupported dtype"),
    (raw_frame({"op": "logits", "shape": [1], "dtype": "float64"}), "unsupported dtype"),
    (raw_frame({"op": "logits", "shape": [-1, 2], "dtype": "float32"}), "bad shape"),
    (raw_frame({"op": "logits", "shape": [1.5], "dtype": "float32"}), "bad shape"),
    (raw_frame({"op": "logits", "shape": [True], "dtype": "float32"}), "bad shape"),
    (raw_frame({"op": "logits", "shape": [1] * 9, "dtype": "float32"}), "bad shape"),
    (raw_frame({"op": "logits", "shape": "(1, 2)", "dtype": "float32"}), "bad shape"),
])
def test_garbage_headers_are_rejected(pipe, data, message) -> None:
    r, w = pipe
    os.write(w, data)
    with pytest.raises(ProtocolError, match=message):
        read_frame(r, 1 << 20)


def test_a_body_larger_than_expected_is_refused_before_it_is_allocated(pipe) -> None:
    r, w = pipe
    # 2**20 x 2**12 float32 = 16 GiB announced; only the header is ever sent.
    os.write(w, raw_frame({"op": "logits", "shape": [1 << 20, 1 << 12], "dtype": "float32"}))
    header = read_header(r)
    assert header is not None and header.nbytes == 1 << 34
    os.write(w, raw_frame({"op": "logits", "shape": [1 << 20, 1 << 12], "dtype": "float32"}))
    with pytest.raises(ProtocolError, match="more than the 1048576 expected"):
        read_frame(r, 1 << 20)


def test_only_known_ops_and_dtypes_are_sent(pipe) -> None:
    _, w = pipe
    with pytest.raises(ValueError, match="float64"):
        write_frame(w, "logits", np.zeros(3))
    with pytest.raises(ValueError, match="exec"):
        write_frame(w, "exec", np.zeros(3, np.int64))


def served(model_fn) -> tuple[ModelClient, threading.Thread, list[int]]:
    """serve() on a thread over real pipes, and the client for it."""
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    answered: list[int] = []

    def run() -> None:
        try:
            answered.append(serve(model_fn, req_r, resp_w))
        finally:
            os.close(req_r)
            os.close(resp_w)

    return ModelClient(resp_r, req_w, "model server 0"), in_thread(run), answered


def test_serve_answers_until_the_scorer_hangs_up() -> None:
    client, thread, answered = served(lambda x: np.stack([x, -x], axis=-1) * 0.5)
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    for _ in range(3):
        out = client.logits(tokens, min_columns=2)
        assert out.dtype == np.float32 and out.shape == (2, 3, 2)
        assert np.array_equal(out[..., 1], -0.5 * tokens)
    assert client.calls == 3
    client.close()
    thread.join(timeout=5)
    assert answered == [3]


def test_the_client_names_a_server_that_is_gone() -> None:
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    os.close(req_r)  # the server exited before reading anything
    os.close(resp_w)
    client = ModelClient(resp_r, req_w, "model server 1")
    with pytest.raises(ModelServerError, match=r"model server 1, request 1: .*did the server exit"):
        client.logits(np.zeros((1, 4), np.int64), min_columns=8)
    client.close()


def test_model_fds_are_parsed_strictly() -> None:
    assert parse_model_fds("5,6;7,8") == [(5, 6), (7, 8)]
    for bad in ("5,6;7", "5;6", "a,b", "5,6,7", ""):
        with pytest.raises(ValueError, match="expected 'r0,w0;r1,w1'"):
            parse_model_fds(bad)
    with pytest.raises(ModelServerError, match="AUTORESEARCH_MODEL_FDS is not set"):
        connect_models({})
    r, w = os.pipe()
    try:
        with pytest.raises(ModelServerError, match="1 model server"):
            connect_models({"AUTORESEARCH_MODEL_FDS": f"{r},{w}"}, expect=2)
        (client,) = connect_models({"AUTORESEARCH_MODEL_FDS": f"{r},{w}"})
        assert (client.fd_in, client.fd_out, client.name) == (r, w, "model server 0")
    finally:
        os.close(r)
        os.close(w)
