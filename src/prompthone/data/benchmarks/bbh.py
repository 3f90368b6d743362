"""BIG-Bench Hard (MIT): 27 tasks, each `question` (the input text, options included as given) -> `answer`.

BBH has no train split; callers split each task with `prompthone.data.split`. Targets are kept exactly
as upstream writes them ("(B)", "True", "yes", "] )"): which metric fits depends on the task, and
`BBH_MULTIPLE_CHOICE` names the tasks whose targets are option letters.
"""

from __future__ import annotations

import json
from pathlib import Path

from prompthone.data.benchmarks._common import choose
from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.records import read_text
from prompthone.data.root import dataset_file

BBH_TASKS = (
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
)

# Tasks whose targets are option letters "(A)".."(R)". Upstream quirk: 1 movie_recommendation and 2
# ruin_names targets are option text instead (e.g. "Monsters, Inc"), so metrics should accept either form.
BBH_MULTIPLE_CHOICE = frozenset(
    {
        "date_understanding",
        "disambiguation_qa",
        "geometric_shapes",
        "hyperbaton",
        "logical_deduction_five_objects",
        "logical_deduction_seven_objects",
        "logical_deduction_three_objects",
        "movie_recommendation",
        "penguins_in_a_table",
        "reasoning_about_colored_objects",
        "ruin_names",
        "salient_translation_error_detection",
        "snarks",
        "temporal_sequences",
        "tracking_shuffled_objects_five_objects",
        "tracking_shuffled_objects_seven_objects",
        "tracking_shuffled_objects_three_objects",
    }
)


def load_bbh(task: str, *, root: str | Path | None = None) -> list[Example]:
    """All examples of one BBH task from `<root>/bbh/bbh/<task>.json`; ids are `bbh/<task>:<index>`."""
    choose("BBH task", task, BBH_TASKS)
    path = dataset_file(root, "bbh", "bbh", f"{task}.json")
    text = read_text(path, expected='{"canary": ..., "examples": [{"input": ..., "target": ...}, ...]}')
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=e.lineno) from None
    items = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise DataError("expected an object with a non-empty list 'examples'", path=path, field="examples")
    line = 1 if "\n" not in text.strip() else None  # upstream files are one line; else the index locates it
    out: list[Example] = []
    for i, item in enumerate(items):
        for key in ("input", "target"):
            value = item.get(key) if isinstance(item, dict) else None
            if not isinstance(value, str):
                raise DataError(
                    f"expected a string, got {type(value).__name__}",
                    path=path,
                    line=line,
                    field=f"examples[{i}].{key}",
                )
        out.append(Example(id=f"bbh/{task}:{i}", inputs={"question": item["input"]}, labels={"answer": item["target"]}))
    return out


def load_bbh_cot_prompt(task: str, *, root: str | Path | None = None) -> str:
    """The task's upstream 3-shot chain-of-thought prompt, without the canary header above `-----`."""
    choose("BBH task", task, BBH_TASKS)
    path = dataset_file(root, "bbh", "cot-prompts", f"{task}.txt")
    lines = read_text(path, expected="a canary line, '-----', then the prompt").split("\n")
    try:
        cut = next(i for i, line in enumerate(lines) if line.strip() == "-----")
    except StopIteration:
        raise DataError("expected a '-----' line after the canary header", path=path) from None
    return "\n".join(lines[cut + 1 :]).strip()


__all__ = ["BBH_MULTIPLE_CHOICE", "BBH_TASKS", "load_bbh", "load_bbh_cot_prompt"]
