"""Label-covering demo sets: for a classifier, a demo set shows distinct labels before repeating one."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from prompthone.optimize.baselines import BootstrapRandomSearch
from prompthone.optimize.mipro import MIPRO
from prompthone.optimize.proposers import demo_set_candidates
from prompthone.optimize.proposers.demos import covering_fill, covering_sample, label_field
from prompthone.program import Candidate, ChainOfThought, Demo, Predict, Program

LABELS = ("abbreviation", "description", "entity", "human", "location", "number")


class Classify(Program):
    def __init__(self) -> None:
        self.classify = Predict("question -> label")

    def forward(self, question: str) -> dict:
        return {"label": self.classify(question=question).label}


def demo(i: int, label: str) -> Demo:
    return Demo(question=f"question {i}?", label=label)


def skewed(n: int = 30, offset: int = 0) -> list[Demo]:
    """Mostly "entity", as a 0.5B teacher's passing traces were: 2 in 3 entity, the rest spread thin."""
    out = []
    for i in range(offset, offset + n):
        out.append(demo(i, "entity" if i % 3 else LABELS[(i // 3) % len(LABELS)]))
    return out


def labels_of(demos) -> list[str]:
    return [d["label"] for d in demos]


def test_a_small_label_set_is_found_from_the_data_not_the_signature():
    module = Classify().classify
    assert label_field(module, skewed()) == "label"
    free_text = [demo(i, f"answer number {i}") for i in range(30)]
    assert label_field(module, free_text) is None  # every value distinct: not a classifier
    assert label_field(module, [demo(0, "entity"), demo(1, "human")]) is None  # too few to tell
    assert label_field(module, [demo(i, "entity") for i in range(10)]) is None  # one value: nothing to cover
    cot = ChainOfThought("question -> label")
    with_reasoning = [Demo(question=f"q{i}", reasoning="same", label=LABELS[i % 6]) for i in range(24)]
    assert label_field(cot, with_reasoning) == "label"  # reasoning is optional, never the label


def test_a_covering_sample_takes_distinct_labels_before_repeats():
    pool = skewed()
    present = set(labels_of(pool))
    for seed in range(5):
        six = covering_sample(pool, 6, "label", random.Random(seed))
        assert set(labels_of(six)) == present == set(LABELS)
        ten = covering_sample(pool, 10, "label", random.Random(seed))
        counts = Counter(labels_of(ten))
        assert set(counts) == present and max(counts.values()) - min(counts.values()) <= 1
        assert len(set(ten)) == 10  # no demo twice
    # a plain random sample of the same pool does not cover: the check above is not automatic
    assert any(len(set(labels_of(random.Random(s).sample(pool, 6)))) < 6 for s in range(5))


def test_a_covering_sample_is_seeded_and_keeps_pool_order_without_an_rng():
    pool = skewed()
    assert covering_sample(pool, 6, "label", random.Random(3)) == covering_sample(pool, 6, "label", random.Random(3))
    firsts = covering_sample(pool, 4, "label", None)
    assert firsts == [pool[0], pool[1], pool[3], pool[9]]  # abbreviation, entity, description, human: first seen
    assert len(covering_sample(pool, 100, "label", None)) == len(pool)


def test_the_labelled_fill_prefers_labels_the_set_does_not_show_yet():
    chosen = [demo(100, "entity"), demo(101, "entity"), demo(102, "human")]
    lab = skewed(60, offset=200)
    filled = covering_fill(chosen, lab, 4, ["question"], "label", random.Random(0))
    assert filled[:3] == tuple(chosen)
    assert set(labels_of(filled[3:])) == {"abbreviation", "description", "location", "number"}


def test_demo_set_candidates_cover_labels_by_default_and_not_when_turned_off():
    program = Classify()
    boot = {"classify": tuple(skewed(24))}
    lab = {"classify": tuple(skewed(60, offset=100))}

    def sets(cover: bool) -> list[tuple[Demo, ...]]:
        return demo_set_candidates(
            program, start=Candidate.default(program), bootstrapped=boot, labeled=lab, n_sets=8,
            max_bootstrapped=4, max_labeled=2, rng=random.Random(7), cover_labels=cover,
        )["classify"]  # fmt: skip

    covered = sets(True)
    assert covered == sets(True)  # deterministic for the seed
    assert len(covered) == 8 and covered[0] == ()
    for s in covered[1:]:
        labels = labels_of(s)
        assert len(set(labels)) == min(len(labels), len(LABELS))  # distinct labels before any repeat
    plain = sets(False)
    assert any(len(set(labels_of(s))) < len(s) for s in plain[1:])  # what covering changes


def test_free_text_outputs_keep_the_plain_seeded_sample():
    program = Classify()
    boot = {"classify": tuple(demo(i, f"free answer {i}") for i in range(10))}
    lab = {"classify": tuple(demo(i, f"free answer {i}") for i in range(10, 30))}
    kwargs = dict(start=Candidate.default(program), bootstrapped=boot, labeled=lab, n_sets=6, max_bootstrapped=4,
                  max_labeled=2)  # fmt: skip
    on = demo_set_candidates(program, rng=random.Random(1), cover_labels=True, **kwargs)
    off = demo_set_candidates(program, rng=random.Random(1), cover_labels=False, **kwargs)
    assert on == off


def test_cover_labels_must_be_a_boolean():
    with pytest.raises(ValueError, match="cover_labels must be true or false"):
        MIPRO(cover_labels="no")
    with pytest.raises(ValueError, match="cover_labels must be true or false"):
        BootstrapRandomSearch(cover_labels="no")


@pytest.mark.parametrize("cover", [True, False])
def test_max_demos_caps_a_set_in_all_the_labelled_demos_topping_it_up(cover):
    """`max_demos=4`: no set holds more than 4 demos, a set of 4 bootstrapped ones gets no labelled fill, a
    smaller one is topped up to 4; without the cap the labelled demos come on top (up to 4 + 4)."""
    program = Classify()
    boot = {"classify": tuple(skewed(24))}
    lab = {"classify": tuple(skewed(60, offset=100))}
    booted = set(boot["classify"])

    def sets(max_demos: int | None) -> list[tuple[Demo, ...]]:
        return demo_set_candidates(
            program, start=Candidate.default(program), bootstrapped=boot, labeled=lab, n_sets=10,
            max_bootstrapped=4, max_labeled=4, rng=random.Random(3), cover_labels=cover, max_demos=max_demos,
        )["classify"]  # fmt: skip

    capped, uncapped = sets(4), sets(None)
    assert max(len(s) for s in uncapped) == 8  # what the cap changes
    assert max(len(s) for s in capped) == 4 and len(capped) == 10
    for s in capped[2:]:  # after the start's (none) and the labelled-only set: bootstrapped first, then the fill
        from_boot = [d for d in s if d in booted]
        assert from_boot and s[: len(from_boot)] == tuple(from_boot)
        assert len(s) == 4  # topped up to the cap, never past it
    with pytest.raises(ValueError, match="max_demos"):
        MIPRO(max_demos=0)
