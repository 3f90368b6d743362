"""HotPotQA dev (CC BY-SA 4.0 data, via MIT-licensed repos): multi-hop questions with short answers.

Three views: the full dev Q/A set (7405, no contexts) for closed-book or retrieval programs, and two
sets of questions with the 10 paragraphs HotPotQA's distractor setting gives each one, pooled into one
corpus of `title | text` passages for a retrieve-then-answer program: a 100-question sample and IRCoT's
500-question subsample. The first two use the id `hotpotqa/dev:<position in the dev set>`, so the same
question has the same id in both; the 500 carry only HotPotQA's own id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prompthone.data.benchmarks._common import field
from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.frozen import FrozenMap
from prompthone.data.records import Record, read_records
from prompthone.data.root import dataset_file

DEV_FILE = "hotpot_dev_v1_simplified.json"
DISTRACTOR_FILE = "hotpot_dev_distractor_sample100.jsonl"
IRCOT_FILE = "hotpot_dev_distractor_ircot500.jsonl"


@dataclass(frozen=True)
class HotpotDistractor:
    """The 100-question distractor sample: questions, the pooled passage corpus, and each one's context.

    `corpus` holds every distinct passage once, in first-seen order (1000 here); `contexts` maps an
    example id to its own 10 passages in upstream order, for oracle-context baselines.
    """

    questions: tuple[Example, ...]
    corpus: tuple[str, ...]
    contexts: Mapping[str, tuple[str, ...]]


def format_passage(title: str, sentences: list[str] | tuple[str, ...]) -> str:
    """`title | text`, the text being the sentences joined as written (they carry their own spaces)."""
    return f"{title} | {''.join(sentences).strip()}"


def load_hotpotqa_dev(*, root: str | Path | None = None) -> list[Example]:
    """The 7405 dev questions; labels `answer` and `type` ("bridge" or "comparison")."""
    path = dataset_file(root, "hotpotqa", DEV_FILE)
    return [
        Example(
            id=f"hotpotqa/dev:{rec.index}",
            inputs={"question": field(path, rec, "question")},
            labels={"answer": field(path, rec, "answer"), "type": field(path, rec, "type")},
        )
        for rec in read_records(path)
    ]


def load_hotpotqa_distractor(*, root: str | Path | None = None) -> HotpotDistractor:
    """The 100 dev questions with their 10 paragraphs; labels `answer`, `type`, `supporting_titles`."""
    path = dataset_file(root, "hotpotqa", DISTRACTOR_FILE)

    def read(rec: Record) -> tuple[Example, tuple[str, ...]]:
        facts = field(path, rec, "supporting_facts", dict)
        titles = facts.get("title")
        if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
            raise DataError("expected a list of titles", path=path, line=rec.line, field="supporting_facts.title")
        example = Example(
            id=f"hotpotqa/dev:{field(path, rec, 'hf_validation_index', int)}",
            inputs={"question": field(path, rec, "question")},
            labels={
                "answer": field(path, rec, "answer"),
                "type": field(path, rec, "type"),
                "supporting_titles": tuple(dict.fromkeys(titles)),
            },
        )
        return example, _passages(path, rec)

    return _pooled(path, read, id_field="hf_validation_index")


def load_hotpotqa_ircot500(*, root: str | Path | None = None) -> HotpotDistractor:
    """IRCoT's 500 dev questions with their distractor-setting paragraphs (issue 15, items 5-6).

    Five times the questions of the 100-question sample, so 100 validation and 200 test questions fit
    beside each other. Ids are `hotpotqa/id:<HotpotQA question id>` (the file has no dev-set position);
    labels `answer` and `supporting_titles`. The corpus pools every distinct passage (4858 here).
    """
    path = dataset_file(root, "hotpotqa", IRCOT_FILE)

    def read(rec: Record) -> tuple[Example, tuple[str, ...]]:
        answers = field(path, rec, "answers_objects", list)
        spans = answers[0].get("spans") if answers and isinstance(answers[0], dict) else None
        if not isinstance(spans, list) or not spans or not isinstance(spans[0], str):
            raise DataError(
                "expected [{'spans': [answer, ...]}, ...]", path=path, line=rec.line, field="answers_objects"
            )
        paragraphs = field(path, rec, "contexts", list)
        if not all(
            isinstance(p, dict) and isinstance(p.get("title"), str) and isinstance(p.get("paragraph_text"), str)
            for p in paragraphs
        ):
            raise DataError(
                "expected [{'title': str, 'paragraph_text': str, 'is_supporting': bool}, ...]",
                path=path,
                line=rec.line,
                field="contexts",
            )
        example = Example(
            id="hotpotqa/id:" + field(path, rec, "question_id"),
            inputs={"question": field(path, rec, "question_text")},
            labels={
                "answer": spans[0],
                "supporting_titles": tuple(
                    dict.fromkeys(p["title"] for p in paragraphs if p.get("is_supporting") is True)
                ),
            },
        )
        return example, tuple(format_passage(p["title"], [p["paragraph_text"]]) for p in paragraphs)

    return _pooled(path, read, id_field="question_id")


def _pooled(
    path: Path, read: Callable[[Record], tuple[Example, tuple[str, ...]]], *, id_field: str
) -> HotpotDistractor:
    """Every record of `path` read into a question and its passages; the corpus pools the distinct
    passages in first-seen order, so BM25 sees each paragraph once however many questions share it."""
    questions: list[Example] = []
    corpus: dict[str, None] = {}
    contexts: dict[str, tuple[str, ...]] = {}
    for rec in read_records(path):
        example, passages = read(rec)
        if example.id in contexts:
            raise DataError(f"duplicate question {example.id!r}", path=path, line=rec.line, field=id_field)
        questions.append(example)
        contexts[example.id] = passages
        corpus.update(dict.fromkeys(passages))
    return HotpotDistractor(questions=tuple(questions), corpus=tuple(corpus), contexts=FrozenMap(contexts))


def _passages(path: Path, rec: Record) -> tuple[str, ...]:
    context = field(path, rec, "context", dict)
    titles, sentences = context.get("title"), context.get("sentences")
    ok = (
        isinstance(titles, list)
        and isinstance(sentences, list)
        and len(titles) == len(sentences)
        and all(isinstance(t, str) for t in titles)
        and all(isinstance(s, list) and all(isinstance(x, str) for x in s) for s in sentences)
    )
    if not ok:
        raise DataError(
            "expected {'title': [str, ...], 'sentences': [[str, ...], ...]} with one sentence list per title",
            path=path,
            line=rec.line,
            field="context",
        )
    return tuple(format_passage(t, s) for t, s in zip(titles, sentences, strict=True))


__all__ = [
    "HotpotDistractor",
    "format_passage",
    "load_hotpotqa_dev",
    "load_hotpotqa_distractor",
    "load_hotpotqa_ircot500",
]
