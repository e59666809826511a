"""load_examples (formats, errors naming line and field), batches, split_holdout."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest

from seedfl.core.config import TaskConfig
from seedfl.training.data import DataError, Example, batches, load_examples, split_holdout

CLS = TaskConfig()  # classification, fields text/label, labels "0"/"1"
LM = dataclasses.replace(CLS, type="causal_lm", max_length=8)
COMPLETION = dataclasses.replace(CLS, type="completion")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list[object]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_jsonl_classification_keeps_fields_and_compares_labels_as_strings(tmp_path: Path) -> None:
    rows = [{"text": "good", "label": 1, "id": 7}, {"text": "bad", "label": "0"},
            {"text": "fine", "label": 1.0}]
    path = write(tmp_path, "d.jsonl", jsonl(rows).replace("\n", "\n\n", 1))  # a blank line
    assert load_examples(path, CLS) == [
        Example(text="good", label="1"), Example(text="bad", label="0"),
        Example(text="fine", label="1"),
    ]


def test_json_array_and_csv_and_tsv(tmp_path: Path) -> None:
    arr = write(tmp_path, "d.json", json.dumps([{"text": "a", "label": "0"}]))
    assert load_examples(arr, CLS) == [Example(text="a", label="0")]
    csv_path = write(tmp_path, "d.csv", 'label,text\n1,"hello, world"\n0,"two\nlines"\n')
    assert load_examples(csv_path, CLS) == [
        Example(text="hello, world", label="1"), Example(text="two\nlines", label="0"),
    ]
    tsv = write(tmp_path, "d.tsv", "prompt\tcompletion\nQ\tA\n")
    assert load_examples(tsv, COMPLETION) == [Example(prompt="Q", completion="A")]


def test_plain_text_splits_paragraphs_and_chunks_long_ones(tmp_path: Path) -> None:
    long = " ".join(["word"] * 20)  # 99 chars; chunks of <= 8 * 4 = 32 chars
    path = write(tmp_path, "d.txt", f"first para\nstill first\n\n\n{long}\n")
    examples = load_examples(path, LM)
    assert examples[0] == Example(text="first para\nstill first")
    chunks = [e.text for e in examples[1:]]
    assert all(len(c) <= 32 for c in chunks) and len(chunks) == 4
    assert " ".join(chunks) == long
    with pytest.raises(DataError, match=r"d\.txt: plain text has no fields"):
        load_examples(path, CLS)


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl([{"text": "a", "label": 0}, {"txt": "b", "label": 1}]))
    with pytest.raises(DataError) as err:
        load_examples(path, CLS)
    msg = str(err.value)
    assert f"{path}:2:" in msg and "missing field 'text'" in msg and "task.text_field" in msg
    csv_path = write(tmp_path, "d.csv", "text\nhello\n")
    with pytest.raises(DataError, match=r"d\.csv:2: missing field 'label'"):
        load_examples(csv_path, CLS)


def test_unknown_label_names_line_label_and_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl([{"text": "a", "label": 0}] * 2
                                            + [{"text": "c", "label": "neutral"}]))
    with pytest.raises(DataError) as err:
        load_examples(path, CLS)
    msg = str(err.value)
    assert f"{path}:3:" in msg and "'neutral'" in msg and "'0', '1'" in msg
    assert "[task.verbalizer]" in msg


def test_bad_json_wrong_types_empty_and_unknown_files(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.jsonl", '{"text": "a", "label": 0}\n{"text": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        load_examples(bad, CLS)
    typed = write(tmp_path, "typed.jsonl", jsonl([{"text": 5, "label": 0}]))
    with pytest.raises(DataError, match=r"typed\.jsonl:1: field 'text' must be a string"):
        load_examples(typed, CLS)
    empty = write(tmp_path, "empty.jsonl", "\n\n")
    with pytest.raises(DataError, match="no examples found"):
        load_examples(empty, CLS)
    with pytest.raises(DataError, match=r"unknown file type '\.parquet'"):
        load_examples(write(tmp_path, "d.parquet", ""), CLS)
    with pytest.raises(DataError, match="no such file"):
        load_examples(tmp_path / "absent.jsonl", CLS)


def test_batches_deterministic_per_node_and_different_across_nodes() -> None:
    examples = [Example(text=str(i)) for i in range(10)]

    def order(node: bytes, n_batches: int = 6) -> list[str]:
        it = batches(examples, node, 4)
        return [e.text for b in itertools.islice(it, n_batches) for e in b]

    a1, a2, b = order(b"\x01" * 16), order(b"\x01" * 16), order(b"\x02" * 16)
    assert a1 == a2
    assert a1 != b
    # Each epoch is a permutation; batches stay full across the epoch boundary.
    assert sorted(a1[:10]) == sorted(a1[10:20]) == sorted(e.text for e in examples)
    assert a1[:10] != a1[10:20]
    assert all(len(x) == 4 for x in itertools.islice(batches(examples, b"n", 4), 5))


def test_batches_smaller_data_than_batch_and_no_torch_rng() -> None:
    import torch

    state = torch.get_rng_state()
    first = next(batches([Example(text="a"), Example(text="b")], b"x", 5))
    assert len(first) == 5 and {e.text for e in first} == {"a", "b"}
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(DataError):
        next(batches([], b"x", 2))


def test_split_holdout_is_deterministic_and_disjoint() -> None:
    examples = [Example(text=str(i)) for i in range(20)]
    train, held = split_holdout(examples, 0.25, seed=3)
    assert (train, held) == split_holdout(examples, 0.25, seed=3)
    assert len(held) == 5 and len(train) == 15
    assert sorted(train + held, key=lambda e: int(e.text)) == examples
    assert held != split_holdout(examples, 0.25, seed=4)[1]
    assert split_holdout(examples[:1], 0.5, seed=0) == (examples[:1], [])


def test_jsonl_keeps_unicode_line_separators_inside_text(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from seedfl.core.config import TaskConfig
    from seedfl.training.data import load_examples

    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "caf\\u00e9\u0085 ok", "label": "0"}\n{"text": "b", "label": "1"}\n',
                    encoding="utf-8")
    rows = load_examples(path, TaskConfig(verbalizer=(("0", " no"), ("1", " yes"))))
    assert [r.text for r in rows] == ["café\u0085 ok", "b"]
