import io
import json
import threading

import pytest

from dops_worker.protocol.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    FrameReader,
    FrameTooLarge,
    FrameWriter,
    encode_frame,
    max_frame_bytes_from_env,
)


class ChunkedRaw(io.RawIOBase):
    """A raw stream that returns at most ``chunk`` bytes per read, like a pipe under load."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(self._chunk, len(buffer), len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def reader_for(data: bytes, limit: int = 64, chunk: int = 3) -> FrameReader:
    return FrameReader(io.BufferedReader(ChunkedRaw(data, chunk), buffer_size=8), limit)


def test_partial_lines_are_joined_into_whole_frames():
    frames = list(reader_for(b'{"a":1}\n{"b":\n2}\n', chunk=2))
    assert [f.payload for f in frames] == [b'{"a":1}', b'{"b":', b"2}"]


def test_frame_arriving_in_pieces_through_a_pipe_is_read_once_complete():
    import os

    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as read_end:
        reader = FrameReader(read_end, 1024)

        def writer():
            with os.fdopen(write_fd, "wb", buffering=0) as out:
                for piece in (b'{"jsonrpc":', b'"2.0","method"', b':"x"}\n'):
                    out.write(piece)

        thread = threading.Thread(target=writer)
        thread.start()
        frame = reader.read_frame()
        thread.join()
        assert json.loads(frame.payload) == {"jsonrpc": "2.0", "method": "x"}
        assert reader.read_frame() is None


def test_crlf_blank_lines_and_unterminated_last_line():
    frames = list(reader_for(b'{"a":1}\r\n\n   \n{"b":2}'))
    assert [f.payload for f in frames] == [b'{"a":1}', b'{"b":2}']


def test_frame_of_exactly_the_limit_passes_and_one_more_byte_is_oversized():
    limit = 16
    exact = b"x" * limit
    frames = list(reader_for(exact + b"\n" + exact + b"y\n" + b"ok\n", limit=limit))
    assert frames[0].payload == exact and frames[0].oversized == 0
    assert frames[1].payload == b"" and frames[1].oversized == limit + 1
    assert frames[2].payload == b"ok"


def test_oversized_line_is_skipped_to_its_end_and_reading_continues():
    big = b"y" * 1000
    frames = list(reader_for(big + b"\n" + b'{"after":true}\n', limit=64, chunk=7))
    assert frames[0].oversized == 1000
    assert frames[1].payload == b'{"after":true}'
    assert len(frames) == 2


def test_oversized_unterminated_line_at_eof():
    frames = list(reader_for(b"z" * 200, limit=64))
    assert len(frames) == 1 and frames[0].oversized == 200


def test_writer_refuses_oversized_frame_and_writes_nothing():
    out = io.BytesIO()
    writer = FrameWriter(out, max_frame_bytes=32)
    with pytest.raises(FrameTooLarge) as info:
        writer.write({"blob": "x" * 100})
    assert info.value.size > 32 and info.value.limit == 32
    assert out.getvalue() == b""
    writer.write({"ok": 1})
    assert out.getvalue() == b'{"ok":1}\n'


def test_writer_rejects_nan_and_keeps_utf8():
    with pytest.raises(ValueError):
        encode_frame({"x": float("nan")})
    assert encode_frame({"name": "Grafikkarte \u00fc"}) == '{"name":"Grafikkarte \u00fc"}\n'.encode()


def test_concurrent_writers_never_interleave_frames():
    read_fd, write_fd = __import__("os").pipe()
    out = __import__("os").fdopen(write_fd, "wb", buffering=0)
    writer = FrameWriter(out)
    payload = "p" * 5000
    received: list[bytes] = []

    def drain():
        with __import__("os").fdopen(read_fd, "rb") as read_end:
            received.extend(read_end.read().splitlines())

    drainer = threading.Thread(target=drain)
    drainer.start()
    threads = [threading.Thread(target=lambda t=t: [writer.write({"t": t, "i": i, "p": payload}) for i in range(50)])
               for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.close()
    drainer.join()
    decoded = [json.loads(line) for line in received]
    assert len(decoded) == 200
    assert sorted((d["t"], d["i"]) for d in decoded) == [(t, i) for t in range(4) for i in range(50)]


@pytest.mark.parametrize(("raw", "expected"), [
    (None, DEFAULT_MAX_FRAME_BYTES), ("1024", 1024), ("", DEFAULT_MAX_FRAME_BYTES),
    ("-5", DEFAULT_MAX_FRAME_BYTES), ("lots", DEFAULT_MAX_FRAME_BYTES),
])
def test_max_frame_bytes_from_env(raw, expected):
    env = {} if raw is None else {"DOPS_WORKER_MAX_FRAME_BYTES": raw}
    assert max_frame_bytes_from_env(env) == expected
    assert DEFAULT_MAX_FRAME_BYTES == 16 * 1024 * 1024
