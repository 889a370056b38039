"""Hub downloads (tinystories, climbmix) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpt_fixtures import load_prepare

# The template's dependencies are the `gpt` extra: skip, don't fail, where it is missing.
pytest.importorskip("torch")
pytest.importorskip("tiktoken")
pytest.importorskip("rustbpe")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


class Server:
    """Serves files from a dict, honours Range, and can cut chosen responses short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # path -> bytes to send before dropping, once
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                if cut is not None:  # promise everything, send part, hang up
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def parquet_bytes(docs: list[str]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": docs}), buf, row_group_size=50)
    return buf.getvalue()


STORIES = [f"Once upon a time, story number {i} had a happy ending." for i in range(300)]


def test_failure_mid_download_leaves_no_shard_then_resumes(monkeypatch, tmp_path, server) -> None:
    p = load_prepare(monkeypatch, tmp_path)
    data = parquet_bytes(STORIES)
    server.files["/f.parquet"] = data
    server.cut_after["/f.parquet"] = len(data) // 2
    dest = tmp_path / "f.parquet"
    with pytest.raises(p.DownloadError, match="--data shakespeare"):
        p.download_file(f"{server.url}/f.parquet", dest, attempts=1, backoff=0)
    assert not dest.exists()  # no half-written shard under the real name
    part = dest.with_name("f.parquet.part")
    assert part.stat().st_size == len(data) // 2  # the bytes that did arrive are kept...
    p.download_file(f"{server.url}/f.parquet", dest, attempts=1, backoff=0)
    assert server.requests[-1] == ("/f.parquet", f"bytes={len(data) // 2}-")  # ...and resumed
    assert dest.read_bytes() == data and not part.exists()
    assert pq.read_table(dest).column("text").to_pylist() == STORIES


def test_retries_resume_within_one_call(monkeypatch, tmp_path, server) -> None:
    p = load_prepare(monkeypatch, tmp_path)
    data = parquet_bytes(STORIES)
    server.files["/f.parquet"] = data
    server.cut_after["/f.parquet"] = 1000
    p.download_file(f"{server.url}/f.parquet", tmp_path / "f.parquet", attempts=3, backoff=0)
    assert [r for _, r in server.requests] == [None, "bytes=1000-"]
    assert (tmp_path / "f.parquet").read_bytes() == data


def test_corrupt_download_is_discarded(monkeypatch, tmp_path, server) -> None:
    p = load_prepare(monkeypatch, tmp_path)
    server.files["/f.parquet"] = b"<html>not a parquet file</html>"
    with pytest.raises(p.DownloadError):
        p.download_file(f"{server.url}/f.parquet", tmp_path / "f.parquet", attempts=2, backoff=0)
    assert list(tmp_path.glob("f.parquet*")) == []
    assert len(server.requests) == 2  # retried from scratch, not resumed from bad bytes


def test_tinystories_end_to_end(monkeypatch, tmp_path, server) -> None:
    p = load_prepare(monkeypatch, tmp_path, AUTORESEARCH_DATA_URL=server.url)
    monkeypatch.setattr(p, "TINYSTORIES_VAL_DOCS", 30)
    monkeypatch.setattr(p, "TINYSTORIES_HOLDOUT_DOCS", 20)
    data = parquet_bytes(STORIES)
    server.files[f"/{p.TINYSTORIES_FILE}"] = data
    server.cut_after[f"/{p.TINYSTORIES_FILE}"] = len(data) // 3  # one failure on the way
    monkeypatch.setattr(p.time, "sleep", lambda s: None)  # keep the retry backoff instant
    p.main(["--data", "tinystories"])
    assert (tmp_path / "active").read_text().strip() == "tinystories"
    assert pq.read_table(p.val_file()).column("text").to_pylist() == STORIES[:30]
    assert pq.read_table(p.holdout_file()).column("text").to_pylist() == STORIES[30:50]
    train = [d for f in p.train_files() for d in pq.read_table(f).column("text").to_pylist()]
    assert train == STORIES[50:]
    # The download (it holds the val stories too) lived under raw/, never beside the train
    # shards, and is gone once split.
    assert sorted(f.name for f in p.data_dir().iterdir()) == ["COMPLETE", "train_00000.parquet"]
    assert list(p.raw_dir("tinystories").iterdir()) == []
    tok = p.Tokenizer.from_directory()
    assert tok.decode(tok.encode(STORIES[0])) == STORIES[0]


def test_climbmix_shards_and_pinned_val(monkeypatch, tmp_path, server) -> None:
    p = load_prepare(monkeypatch, tmp_path, AUTORESEARCH_DATA_URL=server.url)
    for i in (0, 1):
        server.files[f"/shard_{i:05d}.parquet"] = parquet_bytes(STORIES[i * 100 : (i + 1) * 100])
    server.files["/shard_06542.parquet"] = parquet_bytes(STORIES[200:])
    server.files["/shard_06541.parquet"] = parquet_bytes(STORIES[150:200])
    p.main(["--data", "climbmix", "--num-shards", "2"])
    assert [f.name for f in p.train_files()] == ["train_00000.parquet", "train_00001.parquet"]
    assert pq.read_table(p.val_file()).column("text").to_pylist() == STORIES[200:]
    assert pq.read_table(p.holdout_file()).column("text").to_pylist() == STORIES[150:200]
    assert sorted(path for path, _ in server.requests) == [
        "/shard_00000.parquet", "/shard_00001.parquet", "/shard_06541.parquet",
        "/shard_06542.parquet"]


def test_unreachable_source_named_and_shakespeare_suggested(monkeypatch, tmp_path, server) -> None:
    p = load_prepare(monkeypatch, tmp_path, AUTORESEARCH_DATA_URL=server.url)  # serves nothing
    with pytest.raises(SystemExit) as exc:
        p.main(["--data", "tinystories"])
    message = str(exc.value)
    assert "tinystories" in message and server.url in message
    assert "python prepare.py --data shakespeare" in message
    assert len(server.requests) == 1  # a 404 is not retried
    assert not list(Path(tmp_path).rglob("*.parquet"))
    assert not (tmp_path / "active").exists()
