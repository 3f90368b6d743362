"""Data layer: examples, file loaders and their errors, seeded splits, benchmark readers, BM25, shipped data."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

import prompthone
from prompthone.data import (
    BBH_MULTIPLE_CHOICE,
    BBH_TASKS,
    ENV_VAR,
    TREC_CLASSES,
    DataError,
    DataRootNotFoundError,
    Example,
    SplitOverlapError,
    check_disjoint,
    dedupe_by_content,
    find_content_duplicates,
    find_data_root,
    load_bbh,
    load_bbh_cot_prompt,
    load_examples,
    load_gsm8k,
    load_gsm8k_mini,
    load_hotpotqa_dev,
    load_hotpotqa_distractor,
    load_hotpotqa_ircot500,
    load_multiarith,
    load_sst2,
    load_trec,
    load_trec_mini,
    split,
)
from prompthone.data.retrieval import BM25Index, tokenize
from prompthone.data.root import KNOWN_DATASETS, SHIPPED_ROOT
from prompthone.data.shipped import GSM8K_MINI_FILE, TREC_MINI_FILE, shipped_path

#: the benchmark files these tests read: the copy shipped in the package, or PROMPTHONE_DATA_DIR
DATA_ROOT = Path(os.environ.get(ENV_VAR) or SHIPPED_ROOT)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def ids(examples) -> list[str]:
    return [ex.id for ex in examples]


# ---------------------------------------------------------------------------------------------- Example


def test_example_is_deeply_immutable_and_detached_from_its_source():
    source = {"question": "q", "extra": {"tags": ["a", "b"]}}
    ex = Example(id="x:1", inputs=source, labels={"answer": "42"})
    source["question"] = "changed"
    source["extra"]["tags"].append("c")
    assert ex.inputs["question"] == "q"
    assert ex.inputs["extra"]["tags"] == ("a", "b")
    with pytest.raises(TypeError):
        ex.inputs["question"] = "no"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.id = "y"  # type: ignore[misc]


def test_equal_examples_hash_equal_and_dedupe_in_a_set():
    a = Example(id="x:1", inputs={"q": "hi", "opts": ["a", "b"]}, labels={"answer": "a"})
    b = Example(id="x:1", inputs={"q": "hi", "opts": ["a", "b"]}, labels={"answer": "a"})
    c = Example(id="x:1", inputs={"q": "hi", "opts": ["a", "c"]}, labels={"answer": "a"})
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert a.inputs == {"q": "hi", "opts": ("a", "b")}  # compares equal to a plain dict


def test_example_json_round_trip_keeps_nested_values():
    ex = Example(id="x:1", inputs={"q": "hi", "ctx": [{"t": "T", "s": ["s1", "s2"]}]}, labels={"n": 3.5, "ok": True})
    data = json.loads(json.dumps(ex.to_dict()))
    assert data == {
        "id": "x:1",
        "inputs": {"q": "hi", "ctx": [{"t": "T", "s": ["s1", "s2"]}]},
        "labels": {"n": 3.5, "ok": True},
    }
    assert Example.from_dict(data) == ex


def test_example_rejects_bad_construction_with_clear_messages():
    with pytest.raises(TypeError, match="non-empty string"):
        Example(id="", inputs={}, labels={})
    with pytest.raises(TypeError, match="inputs must be a mapping"):
        Example(id="a", inputs=["q"], labels={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="missing key\\(s\\) labels; got keys id, inputs"):
        Example.from_dict({"id": "a", "inputs": {}})
    with pytest.raises(ValueError, match="unexpected key\\(s\\) meta"):
        Example.from_dict({"id": "a", "inputs": {}, "labels": {}, "meta": 1})


# ---------------------------------------------------------------------------------------------- loaders


def test_jsonl_maps_source_fields_and_ids_follow_file_lines(tmp_path):
    path = write(
        tmp_path,
        "qa.jsonl",
        '{"Q": "one?", "A": "1", "junk": 0}\n\n{"Q": "two?", "A": "2"}\n',
    )
    exs = load_examples(path, inputs={"Q": "question"}, labels={"A": "answer"})
    assert ids(exs) == ["qa:1", "qa:3"]  # the blank line 2 is skipped but still counted
    assert exs[1].inputs == {"question": "two?"} and exs[1].labels == {"answer": "2"}


def test_json_list_ids_are_indices_and_id_field_overrides(tmp_path):
    path = write(tmp_path, "set.json", json.dumps([{"q": "a", "a": 1, "uid": 7}, {"q": "b", "a": 2, "uid": "k"}]))
    assert ids(load_examples(path, inputs=["q"], labels=["a"])) == ["set:0", "set:1"]
    exs = load_examples(path, inputs=["q"], labels=["a"], id_field="uid", label_types={"a": int})
    assert ids(exs) == ["7", "k"]
    assert exs[0].labels["a"] == 1


def test_csv_converts_declared_types_and_ids_use_the_record_start_line(tmp_path):
    path = write(tmp_path, "t.csv", 'question,answer,score\n"multi\nline?",42,0.5\nplain?,7,1\n')
    exs = load_examples(
        path, inputs=["question"], labels=["answer", "score"], label_types={"answer": int, "score": float}
    )
    assert ids(exs) == ["t:2", "t:4"]
    assert exs[0].inputs["question"] == "multi\nline?"
    assert exs[0].labels == {"answer": 42, "score": 0.5}
    assert exs[1].labels["score"] == 1.0 and isinstance(exs[1].labels["score"], float)


def test_tsv_is_read_by_suffix(tmp_path):
    path = write(tmp_path, "t.tsv", "question\tanswer\nwhy, though?\tbecause\n")
    assert load_examples(path, inputs=["question"], labels=["answer"])[0].inputs["question"] == "why, though?"


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file_is_an_error_naming_the_file(tmp_path, content):
    path = write(tmp_path, "empty.jsonl", content)
    with pytest.raises(DataError, match=r"empty\.jsonl: file is empty; expected one JSON object per line") as e:
        load_examples(path, inputs=["q"])
    assert e.value.path == path


def test_bad_json_line_names_the_line_and_the_json_error(tmp_path):
    path = write(tmp_path, "bad.jsonl", '{"q": "a"}\n{"q": "b"}\n{"q": "c",}\n')
    with pytest.raises(DataError) as e:
        load_examples(path, inputs=["q"])
    assert e.value.line == 3
    assert str(e.value).startswith(f"{path}:3: invalid JSON (")
    assert "column 11" in str(e.value)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = write(tmp_path, "bad.jsonl", '{"q": "a"}\n["q"]\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: expected a JSON object, got a list"):
        load_examples(path, inputs=["q"])


def test_missing_field_names_it_and_lists_the_fields_present(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"question": "a", "answer": "1"}\n{"question": "b", "anwser": "2"}\n')
    with pytest.raises(DataError) as e:
        load_examples(path, inputs=["question"], labels=["answer"])
    assert (e.value.line, e.value.field) == (2, "answer")
    assert str(e.value) == f"{path}:2: field 'answer': missing (the record has fields: question, anwser)"


def test_missing_field_in_a_pretty_printed_json_list_reports_the_items_line(tmp_path):
    items = [{"q": "a", "a": "1"}, {"q": "b", "a": "2"}, {"q": "c"}]
    path = write(tmp_path, "p.json", json.dumps(items, indent=2))
    lines = path.read_text().split("\n")
    expected_line = [n for n, line in enumerate(lines, 1) if line == "  {"][2]  # the third item's opening brace
    assert expected_line == 10
    with pytest.raises(DataError) as e:
        load_examples(path, inputs=["q"], labels=["a"])
    assert (e.value.line, e.value.field) == (expected_line, "a")
    assert "fields: q" in str(e.value)


def test_declared_label_type_mismatch_in_json(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"q": "a", "n": 1}\n{"q": "b", "n": "2"}\n{"q": "c", "n": true}\n')
    with pytest.raises(DataError) as e:
        load_examples(path, inputs=["q"], labels={"n": "answer"}, label_types={"answer": int})
    assert (e.value.line, e.value.field) == (2, "n")
    assert "expected int for label 'answer', got str '2'" in str(e.value)
    path.write_text('{"q": "c", "n": true}\n')
    with pytest.raises(DataError, match="expected int for label 'answer', got bool True"):
        load_examples(path, inputs=["q"], labels={"n": "answer"}, label_types={"answer": int})


def test_declared_label_type_that_csv_text_cannot_satisfy(tmp_path):
    path = write(tmp_path, "c.csv", "q,answer\na,1\nb,two\n")
    with pytest.raises(DataError, match=r"c\.csv:3: field 'answer': expected int, got str 'two'"):
        load_examples(path, inputs=["q"], labels=["answer"], label_types={"answer": int})


def test_duplicate_ids_name_both_lines(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"id": "a", "q": 1}\n{"id": "b", "q": 2}\n{"id": "a", "q": 3}\n')
    with pytest.raises(DataError) as e:
        load_examples(path, inputs=["q"], id_field="id")
    assert str(e.value) == f"{path}:3: field 'id': duplicate id 'a' (first seen at line 1)"


def test_csv_structural_errors_name_the_line(tmp_path):
    ragged = write(tmp_path, "r.csv", "q,a\nx,1\ny\n")
    with pytest.raises(DataError, match=r"r\.csv:3: record has 1 column\(s\) but the header has 2 \(q, a\)"):
        load_examples(ragged, inputs=["q"])
    dup = write(tmp_path, "h.csv", "q,q\nx,y\n")
    with pytest.raises(DataError, match=r"h\.csv:1: field 'q': duplicate column in the header"):
        load_examples(dup, inputs=["q"])
    header_only = write(tmp_path, "o.csv", "q,a\n")
    with pytest.raises(DataError, match=r"o\.csv: no records found"):
        load_examples(header_only, inputs=["q"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"examples": []}', r"expected a JSON list of objects, got an object with keys examples"),
        ("[]", r"no records found"),
        ('[{"q": 1},\n {"q": 2}', r":2: invalid JSON \(unexpected end of file"),
        ('[{"q": 1}, 3]', r":1: item 1: expected a JSON object, got a number"),
        ('[{"q": 1}] x', r"extra data after the closing"),
        ('[{"q": 1}\n {"q": 2}]', r":2: invalid JSON \(expected ',' or '\]' after item 0\)"),
    ],
)
def test_malformed_json_lists(tmp_path, text, message):
    path = write(tmp_path, "l.json", text)
    with pytest.raises(DataError, match=message):
        load_examples(path, inputs=["q"])


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: file not found"):
        load_examples(tmp_path / "nope.jsonl", inputs=["q"])
    txt = write(tmp_path, "x.txt", "q\n")
    with pytest.raises(DataError, match=r"cannot tell the format from the suffix '\.txt'"):
        load_examples(txt, inputs=["q"])
    latin = write(tmp_path, "l.jsonl", b'{"q": "ok"}\n{"q": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"l\.jsonl:2: cannot decode byte b'\\xe9' as utf-8"):
        load_examples(latin, inputs=["q"])
    assert load_examples(latin, inputs=["q"], encoding="latin-1")[1].inputs["q"] == "café"


def test_bad_field_specs_are_rejected_before_reading(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"q": 1}\n')
    with pytest.raises(ValueError, match="label_types names answer, which are not label fields"):
        load_examples(path, inputs=["q"], label_types={"answer": int})
    with pytest.raises(TypeError, match="not the string 'q'"):
        load_examples(path, inputs="q")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same field 'x'"):
        load_examples(path, inputs={"q": "x", "r": "x"})


# ----------------------------------------------------------------------------------------------- splits


def make(n: int, prefix: str = "e") -> list[Example]:
    return [Example(id=f"{prefix}:{i}", inputs={"q": f"question {i}"}, labels={"answer": str(i)}) for i in range(n)]


def test_split_is_reproducible_and_seed_dependent():
    exs = make(50)
    a = split(exs, train=30, val=10, test=10, seed=7)
    b = split(exs, train=30, val=10, test=10, seed=7)
    c = split(exs, train=30, val=10, test=10, seed=8)
    assert a == b
    assert ids(a.train) != ids(c.train)
    assert sorted(ids(a.train + a.val + a.test)) == sorted(ids(exs))
    a.check()


def test_split_does_not_depend_on_hash_randomization_or_the_machine():
    code = (
        "from prompthone.data import Example, split\n"
        "exs = [Example(id=f'e:{i}', inputs={'q': str(i)}, labels={}) for i in range(40)]\n"
        "s = split(exs, val=5, test=5, seed='demo')\n"
        "print(','.join(e.id for e in s.train + s.val + s.test))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    order = outputs.pop().split(",")
    here = split(make(40), val=5, test=5, seed="demo")
    assert order == ids(here.train + here.val + here.test)
    # random.Random(seed) is documented to reproduce across platforms: these are the same everywhere.
    assert order[-5:] == ["e:2", "e:6", "e:32", "e:21", "e:31"]


def test_split_sizes_by_count_fraction_and_rest():
    exs = make(25)
    s = split(exs, val=3, test=2, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (20, 3, 2)
    s = split(exs, train=0.8, val=0.1, test=0.1, seed=0)  # 20 / 2.5 / 2.5: the remainder goes to val
    assert (len(s.train), len(s.val), len(s.test)) == (20, 3, 2)
    s = split(exs, train=0.5, val=0.25, test=0, seed=0)  # does not sum to 1: rounded down, rest unused
    assert (len(s.train), len(s.val), len(s.test)) == (12, 6, 0)
    s = split(make(26), train=0.8, val=0.2, seed=0)  # 20.8 / 5.2 and test=0: every example still used
    assert (len(s.train), len(s.val), len(s.test)) == (21, 5, 0)
    s = split(exs, train=None, test=0.2, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (20, 0, 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"train": 20, "val": 10}, ValueError, "asks for 30 examples .*but only 25 were given"),
        ({"train": None, "val": None}, ValueError, "only one split size may be None"),
        ({"train": -1}, ValueError, "train must be >= 0"),
        ({"val": 1.5}, ValueError, r"val as a fraction must be in \[0, 1\]"),
        ({"test": True}, TypeError, "test must be a count"),
    ],
)
def test_split_rejects_impossible_sizes(kwargs, error, message):
    with pytest.raises(error, match=message):
        split(make(25), seed=0, **kwargs)


def test_split_rejects_duplicate_ids():
    exs = [*make(3), make(1)[0]]
    with pytest.raises(DataError, match="duplicate example id 'e:0'"):
        split(exs, seed=0)


def test_check_disjoint_names_shared_ids_and_their_splits():
    a, b = make(3), make(5)[2:]
    with pytest.raises(SplitOverlapError, match=r"1 id\(s\) in more than one split: 'e:2' \(train and test\)"):
        check_disjoint(a, b, names=["train", "test"])


def test_content_duplicates_across_splits_are_reported_by_id():
    train = [Example(id="t:a", inputs={"q": "What is  2+2?"}, labels={}), *make(2, "t")]
    test = [
        Example(id="x:9", inputs={"q": " What is 2+2? "}, labels={}),
        Example(id="x:8", inputs={"q": "what is 2+2?"}, labels={}),
    ]
    dups = find_content_duplicates(train, test, names=["train", "test"])
    assert [d.ids for d in dups] == [(("train", "t:a"), ("test", "x:9"))]  # whitespace ignored, case kept
    with pytest.raises(SplitOverlapError, match=r"'t:a' \(train\) = 'x:9' \(test\)"):
        check_disjoint(train, test, names=["train", "test"])
    check_disjoint(train, test, content=False)  # ids alone do not overlap
    assert ids(dedupe_by_content(train + test)) == ["t:a", "t:0", "t:1", "x:8"]


# --------------------------------------------------------------------------------------------- data root


def test_data_root_from_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert find_data_root() == tmp_path
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(DataRootNotFoundError, match=f"{ENV_VAR} points to .*missing, which is not a directory"):
        find_data_root()


def test_data_root_is_the_shipped_copy_without_configuration(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)  # nothing around the working directory: the package carries its data
    assert find_data_root() == SHIPPED_ROOT
    assert SHIPPED_ROOT.is_relative_to(Path(prompthone.__file__).parent)
    assert {d for d in KNOWN_DATASETS if (SHIPPED_ROOT / d).is_dir()} == set(KNOWN_DATASETS)


@pytest.mark.parametrize("dataset", KNOWN_DATASETS)
def test_shipped_datasets_match_their_checksums_and_carry_provenance(dataset):
    folder = SHIPPED_ROOT / dataset
    assert (folder / "README.md").is_file()  # provenance and license of each set
    sums = [line.split(maxsplit=1) for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip()]
    assert sums
    for digest, name in sums:
        assert hashlib.sha256((folder / name.strip()).read_bytes()).hexdigest() == digest, name


def test_a_data_root_without_the_file_names_the_expected_path(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(DataError, match=r"gsm8k[/\\]test\.jsonl: file not found; expected the gsm8k data file"):
        load_gsm8k("test", root=tmp_path)


def test_unknown_split_or_task_lists_the_choices():
    with pytest.raises(DataError, match="unknown GSM8K split 'dev'; expected one of: train, test, test_socratic"):
        load_gsm8k("dev", root=DATA_ROOT)
    with pytest.raises(DataError, match="unknown BBH task 'navigation'; expected one of: boolean_expressions,"):
        load_bbh("navigation", root=DATA_ROOT)


# ------------------------------------------------------------------------------- benchmarks on real files


def raw_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    return path.read_bytes().decode(encoding).split("\n")


@pytest.mark.parametrize(("split_name", "count"), [("train", 7473), ("test", 1319), ("test_socratic", 1319)])
def test_gsm8k_counts_and_every_answer_is_an_integer(split_name, count):
    exs = load_gsm8k(split_name, root=DATA_ROOT)
    assert len(exs) == count
    assert all(re.fullmatch(r"-?\d+", ex.labels["answer"]) for ex in exs)
    assert all("<<" not in ex.labels["reasoning"] and "####" not in ex.labels["reasoning"] for ex in exs)


def test_gsm8k_sample_matches_the_raw_file():
    exs = {ex.id: ex for ex in load_gsm8k("test", root=DATA_ROOT)}
    lines = raw_lines(DATA_ROOT / "gsm8k" / "test.jsonl")
    with_comma = next(
        n for n, line in enumerate(lines, 1) if line and "," in json.loads(line)["answer"].split("####")[1]
    )
    negative = next(n for n, line in enumerate(lines, 1) if line and "#### -" in json.loads(line)["answer"])
    for n in (1, with_comma, negative):
        raw = json.loads(lines[n - 1])
        ex = exs[f"gsm8k/test:{n}"]
        assert ex.inputs == {"question": raw["question"]}
        assert ex.labels["answer"] == raw["answer"].rsplit("####", 1)[1].strip().replace(",", "")
    first = exs["gsm8k/test:1"].labels
    assert first["answer"] == "18"
    assert first["reasoning"].startswith("Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18")


def test_bbh_has_27_tasks_with_the_documented_sizes():
    assert sorted(BBH_TASKS) == sorted(p.stem for p in (DATA_ROOT / "bbh" / "bbh").glob("*.json"))
    assert len(BBH_TASKS) == 27 and set(BBH_TASKS) > BBH_MULTIPLE_CHOICE
    sizes = {task: len(load_bbh(task, root=DATA_ROOT)) for task in BBH_TASKS}
    assert sizes.pop("causal_judgement") == 187
    assert sizes.pop("penguins_in_a_table") == 146
    assert sizes.pop("snarks") == 178
    assert set(sizes.values()) == {250}


def test_bbh_sample_keeps_input_and_target_verbatim():
    raw = json.loads((DATA_ROOT / "bbh" / "bbh" / "date_understanding.json").read_text(encoding="utf-8"))["examples"]
    exs = load_bbh("date_understanding", root=DATA_ROOT)
    for i in (0, 137, 249):
        assert exs[i].id == f"bbh/date_understanding:{i}"
        assert exs[i].inputs == {"question": raw[i]["input"]}
        assert exs[i].labels == {"answer": raw[i]["target"]}
    assert "\nOptions:\n(A) 12/11/1937\n(B) 12/25/1937" in exs[0].inputs["question"]
    assert exs[0].labels["answer"] == "(B)"


def test_bbh_multiple_choice_tasks_are_exactly_those_with_letter_targets():
    letter = re.compile(r"\([A-R]\)")
    for task in BBH_TASKS:
        targets = [ex.labels["answer"] for ex in load_bbh(task, root=DATA_ROOT)]
        share = sum(bool(letter.fullmatch(t)) for t in targets) / len(targets)
        assert (share > 0.98) == (task in BBH_MULTIPLE_CHOICE), task


def test_bbh_cot_prompt_drops_the_canary_header():
    raw = raw_lines(DATA_ROOT / "bbh" / "cot-prompts" / "navigate.txt")
    prompt = load_bbh_cot_prompt("navigate", root=DATA_ROOT)
    assert "canary" not in prompt.lower()
    assert prompt.split("\n")[0] == raw[2].strip()
    assert prompt.count("So the answer is") == 3


def test_hotpotqa_dev_matches_the_raw_file():
    raw = json.loads((DATA_ROOT / "hotpotqa" / "hotpot_dev_v1_simplified.json").read_text(encoding="utf-8"))
    exs = load_hotpotqa_dev(root=DATA_ROOT)
    assert len(exs) == 7405
    assert collections.Counter(ex.labels["type"] for ex in exs) == {"bridge": 5918, "comparison": 1487}
    for i in (0, 4367, 7404):
        assert exs[i].id == f"hotpotqa/dev:{i}"
        assert exs[i].inputs == {"question": raw[i]["question"]}
        assert exs[i].labels["answer"] == raw[i]["answer"]


def test_hotpotqa_distractor_questions_corpus_and_contexts():
    data = load_hotpotqa_distractor(root=DATA_ROOT)
    assert len(data.questions) == 100 and len(data.corpus) == 1000
    dev = {ex.id: ex for ex in load_hotpotqa_dev(root=DATA_ROOT)}
    for q in data.questions:  # same id -> same question and answer as the full dev set
        assert q.inputs == dev[q.id].inputs and q.labels["answer"] == dev[q.id].labels["answer"]
        passages = data.contexts[q.id]
        assert len(passages) == 10 and set(passages) <= set(data.corpus)
        assert set(q.labels["supporting_titles"]) <= {p.split(" | ", 1)[0] for p in passages}
    first = json.loads(raw_lines(DATA_ROOT / "hotpotqa" / "hotpot_dev_distractor_sample100.jsonl")[0])
    title, sentences = first["context"]["title"][1], first["context"]["sentences"][1]
    expected = title + " | " + "".join(sentences).strip()
    assert expected == data.contexts[f"hotpotqa/dev:{first['hf_validation_index']}"][1]
    assert expected.startswith('VIVA Poland | VIVA Polska (earlier "VIVApolska!") is a Polish 24h music')


def test_hotpotqa_ircot500_questions_corpus_and_contexts():
    data = load_hotpotqa_ircot500(root=DATA_ROOT)
    assert len(data.questions) == 500 and len({q.id for q in data.questions}) == 500
    assert len(data.corpus) == 4858 and len(set(data.corpus)) == 4858
    raw = [json.loads(s) for s in raw_lines(DATA_ROOT / "hotpotqa" / "hotpot_dev_distractor_ircot500.jsonl") if s]
    for q, rec in zip(data.questions, raw, strict=True):
        assert q.id == "hotpotqa/id:" + rec["question_id"]
        assert q.inputs == {"question": rec["question_text"]}
        assert q.labels["answer"] == rec["answers_objects"][0]["spans"][0]
        passages = data.contexts[q.id]
        assert len(passages) == len(rec["contexts"]) and set(passages) <= set(data.corpus)
        titles = [p.split(" | ", 1)[0] for p in passages]
        assert list(q.labels["supporting_titles"]) == [c["title"] for c in rec["contexts"] if c["is_supporting"]]
        assert set(q.labels["supporting_titles"]) <= set(titles)
    assert data.questions[0].labels["answer"] == "Chief of Protocol"
    # the 12 questions both files hold have the same answer in both (ids differ in form: dev position vs HotPotQA id)
    sample = {q.inputs["question"]: q.labels["answer"] for q in load_hotpotqa_distractor(root=DATA_ROOT).questions}
    shared = [q for q in data.questions if q.inputs["question"] in sample]
    assert len(shared) == 12 and all(sample[q.inputs["question"]] == q.labels["answer"] for q in shared)


@pytest.mark.parametrize(
    ("split_name", "count", "positive"), [("train", 6920, 3610), ("dev", 872, 444), ("test", 1821, 909)]
)
def test_sst2_counts_and_labels(split_name, count, positive):
    exs = load_sst2(split_name, root=DATA_ROOT)
    assert len(exs) == count
    assert collections.Counter(ex.labels["answer"] for ex in exs) == {
        "positive": positive,
        "negative": count - positive,
    }
    lines = raw_lines(DATA_ROOT / "sst2" / f"stsa.binary.{split_name}")
    for n in (1, count):
        code, sentence = lines[n - 1].split(" ", 1)
        ex = exs[n - 1]
        assert ex.id == f"sst2/{split_name}:{n}"
        assert ex.inputs == {"sentence": sentence.strip()}
        assert ex.labels["answer"] == {"0": "negative", "1": "positive"}[code]


def test_trec_counts_classes_and_latin1_text():
    test = load_trec("test", root=DATA_ROOT)
    assert len(test) == 500 and len(load_trec("train", root=DATA_ROOT)) == 5452
    dist = collections.Counter(ex.labels["answer"] for ex in test)
    expected = {"DESC": 138, "NUM": 113, "ENTY": 94, "LOC": 81, "HUM": 65, "ABBR": 9}
    assert dist == {TREC_CLASSES[code]: n for code, n in expected.items()}
    assert set(TREC_CLASSES.values()) == {
        "abbreviation",
        "description",
        "entity",
        "human",
        "location",
        "number",
    }
    assert test[0].inputs == {"question": "How far is it from Denver to Aspen ?"}
    assert test[0].labels == {"answer": "number", "fine": "dist"}
    lines = raw_lines(DATA_ROOT / "trec" / "raw" / "TREC.train", encoding="latin-1")
    n = next(i for i, line in enumerate(lines, 1) if any(ord(ch) > 127 for ch in line))
    ex = {e.id: e for e in load_trec("train", root=DATA_ROOT)}[f"trec/train:{n}"]
    assert ex.inputs["question"] == lines[n - 1].split(" ", 1)[1]
    assert any(ord(ch) > 127 for ch in ex.inputs["question"])


def test_multiarith_answers_are_whole_numbers_as_written():
    raw = json.loads((DATA_ROOT / "multiarith" / "MultiArith.json").read_text(encoding="utf-8"))
    exs = load_multiarith(root=DATA_ROOT)
    assert len(exs) == 600
    by_id = {ex.id: ex for ex in exs}
    for item in (raw[0], raw[599]):
        ex = by_id[f"multiarith:{item['iIndex']}"]
        assert ex.inputs == {"question": item["sQuestion"].strip()}
        assert ex.labels["answer"] == str(int(item["lSolutions"][0]))
    assert by_id["multiarith:0"].labels["answer"] == "39"
    assert all(re.fullmatch(r"\d+", ex.labels["answer"]) for ex in exs)


def test_real_trec_train_and_test_share_questions_that_check_disjoint_reports():
    train, test = load_trec("train", root=DATA_ROOT), load_trec("test", root=DATA_ROOT)
    check_disjoint(train, test, content=False)
    dups = find_content_duplicates(train, test, names=["train", "test"])
    assert len(dups) == 10  # known: 10 test questions also occur in the training file
    with pytest.raises(SplitOverlapError, match="10 input\\(s\\) repeated across splits"):
        check_disjoint(train, test, names=["train", "test"])


@pytest.mark.parametrize(
    ("relpath", "content", "load", "message"),
    [
        (
            "gsm8k/test.jsonl",
            '{"question": "q", "answer": "2 + 2 = 4\\n#### 4"}\n{"question": "q", "answer": "no marker"}\n',
            lambda root: load_gsm8k("test", root=root),
            r"test\.jsonl:2: field 'answer': expected exactly one '####' before the final answer, found 0",
        ),
        (
            "gsm8k/test.jsonl",
            '{"question": "q", "answer": "so\\n#### four"}\n',
            lambda root: load_gsm8k("test", root=root),
            r"test\.jsonl:1: field 'answer': expected a number after '####', got 'four'",
        ),
        (
            "sst2/stsa.binary.dev",
            "1 a fine film .\n2 what ?\n",
            lambda root: load_sst2("dev", root=root),
            r"stsa\.binary\.dev:2: field 'label': expected label 0 or 1 at the start of the line, got '2'",
        ),
        (
            "trec/raw/TREC.test",
            "NUM:dist How far ?\nQUANT:x How many ?\n",
            lambda root: load_trec("test", root=root),
            r"TREC\.test:2: field 'label': expected 'COARSE:fine' with COARSE one of ABBR, DESC",
        ),
        (
            "multiarith/MultiArith.json",
            '[{"iIndex": 1, "sQuestion": "q", "lSolutions": [2.0], "lEquations": []},\n'
            ' {"iIndex": 1, "sQuestion": "q", "lSolutions": [3.0], "lEquations": []}]',
            lambda root: load_multiarith(root=root),
            r"MultiArith\.json:2: field 'iIndex': duplicate iIndex 1 \(first at line 1\)",
        ),
        (
            "bbh/bbh/navigate.json",
            '{"canary": "c", "examples": [{"input": "q", "target": "Yes"}, {"input": "q", "target": 1}]}',
            lambda root: load_bbh("navigate", root=root),
            r"navigate\.json:1: field 'examples\[1\]\.target': expected a string, got int",
        ),
        (
            "hotpotqa/hotpot_dev_distractor_sample100.jsonl",
            '{"hf_validation_index": 3, "question": "q", "answer": "a", "type": "bridge", '
            '"supporting_facts": {"title": []}, "context": {"title": ["T"], "sentences": []}}\n',
            lambda root: load_hotpotqa_distractor(root=root),
            r"sample100\.jsonl:1: field 'context': expected \{'title'",
        ),
        (
            "hotpotqa/hotpot_dev_distractor_ircot500.jsonl",
            '{"question_id": "a1", "question_text": "q", "answers_objects": [{"spans": ["x"]}], "contexts": []}\n'
            '{"question_id": "a2", "question_text": "q", "answers_objects": [{"number": ""}], "contexts": []}\n',
            lambda root: load_hotpotqa_ircot500(root=root),
            r"ircot500\.jsonl:2: field 'answers_objects': expected \[\{'spans'",
        ),
        (
            "hotpotqa/hotpot_dev_distractor_ircot500.jsonl",
            '{"question_id": "a1", "question_text": "q", "answers_objects": [{"spans": ["x"]}], '
            '"contexts": [{"title": "T", "paragraph_text": 3}]}\n',
            lambda root: load_hotpotqa_ircot500(root=root),
            r"ircot500\.jsonl:1: field 'contexts': expected \[\{'title': str",
        ),
        (
            "hotpotqa/hotpot_dev_distractor_ircot500.jsonl",
            '{"question_id": "a1", "question_text": "q", "answers_objects": [{"spans": ["x"]}], "contexts": []}\n'
            '{"question_id": "a1", "question_text": "r", "answers_objects": [{"spans": ["y"]}], "contexts": []}\n',
            lambda root: load_hotpotqa_ircot500(root=root),
            r"ircot500\.jsonl:2: field 'question_id': duplicate question 'hotpotqa/id:a1'",
        ),
    ],
)
def test_benchmark_readers_reject_a_changed_upstream_file(tmp_path, relpath, content, load, message):
    target = tmp_path / relpath
    target.parent.mkdir(parents=True)
    target.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load(tmp_path)


# ------------------------------------------------------------------------------------------------- BM25


PASSAGES = [
    "Paris | Paris is the capital and largest city of France.",
    "Berlin | Berlin is the capital of Germany.",
    "Beyoncé | Beyoncé Knowles is an American singer.",
    "Cats | The domestic cat is a small carnivorous mammal.",
    "Dogs | The dog is a domesticated descendant of the wolf.",
]


def test_bm25_ranks_the_obviously_relevant_passage_first():
    index = BM25Index(PASSAGES)
    assert index.search("What is the capital of France?", k=2) == [PASSAGES[0], PASSAGES[1]]
    assert index.search("wolf descendant", k=1) == [PASSAGES[4]]
    assert index.search("beyonce singer", k=3) == [PASSAGES[2]]  # accents folded; no other passage matches
    assert index.search("quantum chromodynamics", k=3) == []


def test_bm25_ties_keep_corpus_order():
    same = ["Alpha | the rock band", "Beta | the rock band", "Gamma | the rock band"]
    index = BM25Index([PASSAGES[3], *same])
    assert index.search("rock band", k=3) == same
    assert len({s for _, s in index.search_with_scores("rock band", k=3)}) == 1


def test_bm25_rejects_bad_arguments():
    with pytest.raises(ValueError, match="empty list of passages"):
        BM25Index([])
    with pytest.raises(TypeError, match="not a single string"):
        BM25Index("one passage")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be a positive integer"):
        BM25Index(PASSAGES).search("x", k=0)
    assert tokenize("Café au LAIT, s'il vous plaît") == ["cafe", "au", "lait", "s", "il", "vous", "plait"]


def test_bm25_on_hotpotqa_finds_supporting_passages_and_is_stable_across_processes():
    data = load_hotpotqa_distractor(root=DATA_ROOT)
    index = BM25Index(data.corpus)
    found = 0
    for q in data.questions:
        titles = {p.split(" | ", 1)[0] for p in index.search(q.inputs["question"], k=5)}
        found += bool(titles & set(q.labels["supporting_titles"]))
    assert found >= 95  # 99 of 100 questions get at least one supporting paragraph in the top 5
    code = (
        "from prompthone.data import load_hotpotqa_distractor\n"
        "from prompthone.data.retrieval import BM25Index\n"
        f"d = load_hotpotqa_distractor(root={str(DATA_ROOT)!r})\n"
        "ix = BM25Index(d.corpus)\n"
        "for q in d.questions[:20]:\n"
        "    print([d.corpus.index(p) for p in ix.search(q.inputs['question'], k=5)])\n"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": s},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for s in ("3", "4")
    }
    assert len(runs) == 1 and runs.pop().count("\n") == 20


# ---------------------------------------------------------------------------------------------- shipped data


def test_shipped_data_loads_without_any_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "does-not-exist"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataRootNotFoundError):
        find_data_root()
    exs = load_gsm8k_mini()
    assert len(exs) == 60 and len(set(ids(exs))) == 60
    assert all(re.fullmatch(r"\d+", ex.labels["answer"]) for ex in exs)
    assert exs[0].inputs["question"].startswith("Natalia sold clips to 48 of her friends")
    assert exs[0].labels["answer"] == "72"
    trec = load_trec_mini()
    assert len(trec) == 80 and len({ex.inputs["question"] for ex in trec}) == 80
    assert {ex.labels["answer"] for ex in trec} == set(TREC_CLASSES.values())


def test_shipped_gsm8k_follows_its_provenance_note():
    path = shipped_path(GSM8K_MINI_FILE)
    note = (path.parent / "PROVENANCE.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"sha256 of `gsm8k_train_easy60.jsonl`: {digest}" in note
    assert (path.parent / "LICENSE.gsm8k").read_bytes() == (DATA_ROOT / "gsm8k" / "LICENSE").read_bytes()
    source = DATA_ROOT / "gsm8k" / "train.jsonl"
    assert hashlib.sha256(source.read_bytes()).hexdigest() in note
    # The selection rule, recomputed: the first 60 problems with 2 or 3 solution lines before '####'.
    chosen = [
        n
        for n, line in enumerate(raw_lines(source), 1)
        if line and json.loads(line)["answer"].split("####")[0].strip().count("\n") + 1 in (2, 3)
    ][:60]
    assert ids(load_gsm8k_mini()) == [f"gsm8k/train:{n}" for n in chosen]
    train = {ex.id: ex for ex in load_gsm8k("train", root=DATA_ROOT)}
    assert all(train[ex.id] == ex for ex in load_gsm8k_mini())


def test_shipped_trec_follows_its_provenance_note():
    path = shipped_path(TREC_MINI_FILE)
    note = (path.parent / "PROVENANCE.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"sha256 of `trec_train_sample80.jsonl`: {digest}" in note
    assert (path.parent / "LICENSE.trec").read_bytes() == (DATA_ROOT / "trec" / "LICENSE.repo").read_bytes()
    source = DATA_ROOT / "trec" / "raw" / "TREC.train"
    assert hashlib.sha256(source.read_bytes()).hexdigest() in note
    # The selection rule, recomputed: 80 of the 5452 training lines drawn with random.Random(0).
    chosen = sorted(random.Random(0).sample(range(1, 5453), 80))
    assert ids(load_trec_mini()) == [f"trec/train:{n}" for n in chosen]
    lines = raw_lines(source, encoding="latin-1")
    assert [json.loads(r)["text"] for r in path.read_text(encoding="utf-8").splitlines()] == [
        lines[n - 1].rstrip("\r") for n in chosen
    ]
    train = {ex.id: ex for ex in load_trec("train", root=DATA_ROOT)}
    assert all(train[ex.id] == ex for ex in load_trec_mini())
    counts = collections.Counter(ex.labels["answer"] for ex in load_trec_mini())
    assert ", ".join(f"{k} {v}" for k, v in counts.most_common()) in note


def test_nothing_in_the_project_reads_a_folder_beside_the_checkout():
    """No data folder beside a clone: code, tests, benchmarks and CI read the data shipped in the package."""
    top = Path(__file__).resolve().parents[1]
    files = [*top.glob("src/**/*.py"), *top.glob("tests/**/*.py"), *top.glob("benchmarks/**/*.py")]
    files += [top / "Makefile", top / ".ci" / "run", top / "pyproject.toml"]
    # built from parts, so this file holds no needle itself and is searched like every other
    folder = "shared"
    needles = (f"../{folder}", f'"{folder}" / "data"', f"{folder}/data")
    hits = [f"{f.relative_to(top)}: {n}" for f in files for n in needles if n in f.read_text(encoding="utf-8")]
    assert not hits
