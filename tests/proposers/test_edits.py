from __future__ import annotations

from autoresearch.proposers.edits import (
    Edit,
    apply_edits,
    fallback_description,
    is_editable,
    parse_answer,
)

TRAIN = "lr = 0.02\nsteps = 100\n\n\ndef train():\n    x = lr * steps\n    return x\n"
ONE = {"train.py": TRAIN}


def block(search: str, replace: str, path: str | None = "train.py") -> str:
    head = f"{path}\n" if path else ""
    return f"{head}<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def test_search_replace_with_path_and_description():
    answer = "Description: raise the learning rate\n\n" + block("lr = 0.02\n", "lr = 0.03\n")
    parsed = parse_answer(answer, ONE, ["train.py"])
    assert parsed.errors == ()
    assert parsed.description == "raise the learning rate"
    applied = apply_edits(ONE, parsed.edits)
    assert applied.errors == ()
    assert applied.files["train.py"] == TRAIN.replace("lr = 0.02", "lr = 0.03")
    assert applied.changed == ("train.py",)


def test_path_line_may_be_omitted_with_one_editable_file_and_fences_are_ignored():
    answer = ("**Description:** fewer steps\n```python\n"
              + block("steps = 100\n", "steps = 50\n", path=None) + "```\n")
    parsed = parse_answer(answer, ONE, ["train.py"])
    assert parsed.description == "fewer steps"
    assert apply_edits(ONE, parsed.edits).files["train.py"].startswith("lr = 0.02\nsteps = 50\n")


def test_missing_path_with_several_editable_files_is_an_error_naming_them():
    files = {"a.py": "x = 1\n", "b.py": "y = 2\n"}
    parsed = parse_answer("Description: d\n" + block("x = 1\n", "x = 2\n", path=None),
                          files, ["*.py"])
    assert parsed.edits == ()
    assert "no file path" in parsed.errors[0] and "a.py, b.py" in parsed.errors[0]


def test_several_blocks_for_several_files():
    files = {"a.py": "x = 1\n", "b.py": "y = 2\n"}
    answer = "Description: d\n" + block("x = 1\n", "x = 5\n", "a.py") + "\n" + block(
        "y = 2\n", "y = 6\n", "`b.py`")
    applied = apply_edits(files, parse_answer(answer, files, ["*.py"]).edits)
    assert applied.files == {"a.py": "x = 5\n", "b.py": "y = 6\n"}


def test_edit_to_non_editable_path_is_refused_by_name():
    files = {"train.py": TRAIN}
    answer = "Description: cheat\n" + block("DATA = 'fixed'\n", "DATA = 'easy'\n", "prepare.py")
    parsed = parse_answer(answer, files, ["train.py"])
    assert any("`prepare.py` is not editable" in e for e in parsed.errors)
    assert parsed.edits == ()  # dropped, so no later retry can carry it into the worktree


def test_editable_glob_semantics():
    assert is_editable("src/model.py", ["src/*.py"])
    assert not is_editable("src/sub/model.py", ["src/*.py"])
    assert is_editable("src/sub/model.py", ["src/**/*.py"])
    assert is_editable("src/model.py", ["src/**/*.py"])
    assert not is_editable("../train.py", ["*.py"])
    assert not is_editable("/etc/passwd", ["**"])


def test_no_match_reports_the_reason_and_changes_nothing():
    edits = [Edit("train.py", "lr = 0.5\n", "lr = 0.03\n")]
    applied = apply_edits(ONE, edits)
    assert applied.files == ONE and applied.changed == ()
    assert "does not match" in applied.errors[0] and "lr = 0.5" in applied.errors[0]


def test_ambiguous_match_is_an_error():
    text = "a = 1\nb = 2\na = 1\n"
    applied = apply_edits({"f.py": text}, [Edit("f.py", "a = 1\n", "a = 3\n")])
    assert "matches 2 places" in applied.errors[0]


def test_whitespace_tolerant_fallback_reindents_the_replacement():
    # The model dropped the function's indentation and added trailing spaces.
    edits = [Edit("train.py", "x = lr * steps   \nreturn x\n", "x = lr * steps * 2\nreturn x\n")]
    applied = apply_edits(ONE, edits)
    assert applied.errors == ()
    assert "    x = lr * steps * 2\n    return x\n" in applied.files["train.py"]
    assert "ignoring whitespace" in applied.notes[0]


def test_failing_block_is_reported_while_good_blocks_are_kept():
    edits = [Edit("train.py", "lr = 0.02\n", "lr = 0.03\n"),
             Edit("train.py", "nope\n", "still nope\n")]
    applied = apply_edits(ONE, edits)
    assert applied.files["train.py"].startswith("lr = 0.03\n")
    assert len(applied.errors) == 1 and applied.errors[0].startswith("Block 2")


def test_whole_file_in_one_fence():
    answer = "Description: rewrite\n\ntrain.py\n```python\nlr = 1\n```\n"
    parsed = parse_answer(answer, ONE, ["train.py"])
    assert parsed.errors == ()
    assert apply_edits(ONE, parsed.edits).files["train.py"] == "lr = 1\n"


def test_whole_file_path_from_fence_info_string():
    files = {"a.py": "x\n", "b.py": "y\n"}
    parsed = parse_answer("Description: d\n```python b.py\nz = 1\n```\n", files, ["*.py"])
    assert parsed.edits[0].path == "b.py"


def test_malformed_answers_explain_what_to_send():
    assert "no edit" in parse_answer("Description: I would lower lr.", ONE, ["train.py"]).errors[0]
    two = parse_answer("Description: d\n```\na\n```\n```\nb\n```\n", ONE, ["train.py"])
    assert "2 code blocks" in two.errors[0]
    unclosed = parse_answer("Description: d\n<<<<<<< SEARCH\nlr = 0.02\n=======\nlr = 1\n",
                            ONE, ["train.py"])
    assert "not closed" in unclosed.errors[0]


def test_empty_search_creates_a_new_file_but_not_over_an_existing_one():
    created = apply_edits({}, [Edit("new.py", "", "print(1)\n")])
    assert created.files == {"new.py": "print(1)\n"} and created.errors == ()
    clobber = apply_edits(ONE, [Edit("train.py", "", "print(1)\n")])
    assert "SEARCH section is empty" in clobber.errors[0]


def test_fallback_description_skips_code():
    text = "```python\nx = 1\n```\nI doubled the learning rate here.\n"
    assert fallback_description(text) == "I doubled the learning rate here."
