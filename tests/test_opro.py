"""OPRO for prompts, against scripted LMs: the meta-prompt, the loop, dedup, early stop, positions, modules."""

from __future__ import annotations

import random
import re

import pytest

from prompthone.data import Example
from prompthone.evaluate import Evaluator
from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.metrics import ExactMatch
from prompthone.optimize import Budget, OptimizationSetup
from prompthone.optimize.opro import OPRO, History, bucketize, parse_instruction
from prompthone.optimize.opro.meta import order_word
from prompthone.optimize.registry import make_optimizer
from prompthone.program import Candidate, Predict, Program, PromptParams, Signature, render_messages
from prompthone.program.program import SingleModule
from prompthone.testing.replies import instruction_of, write_reply

START = "Answer the question."
LEVEL = re.compile(r"level (\d+)")


def examples(prefix: str, n: int) -> list[Example]:
    return [Example(f"{prefix}{i}", {"question": f"{prefix}-q{i}"}, {"answer": f"{prefix}-a{i}"}) for i in range(n)]


def leveled_task_lm(log: list | None = None) -> LM:
    """Answers question i right iff some message says `level N` with i < N: an instruction's training
    score is then N/len(train), known in advance."""

    def respond(req):
        if log is not None:
            log.append(req)
        text = "\n".join(c for _, c in req.messages)
        m = LEVEL.search(text)
        level = int(m.group(1)) if m else 0
        user = [c for r, c in req.messages if r == "user"][-1]
        q = re.search(r"(\w+)-q(\d+)", user)
        prefix, i = q.group(1), int(q.group(2))
        return write_reply(req.messages[0][1], {"answer": f"{prefix}-a{i}" if i < level else "wrong"})

    return LM(ScriptedBackend(respond, name="task"), cache=False)


def proposer(replies, log: list | None = None) -> LM:
    """Reply number k (its sample_index) is replies[k], or the last one when they run out."""

    def respond(req):
        if log is not None:
            log.append(req)
        return replies[min(req.sample_index, len(replies) - 1)]

    return LM(ScriptedBackend(respond, name="proposer"), cache=False)


def make_setup(prop: LM, task: LM | None = None, *, program=None, train=10, val=10, **kw) -> OptimizationSetup:
    program = program or SingleModule(Predict("question -> answer", instruction=START), name="qa")
    task = task or leveled_task_lm()
    evaluator = Evaluator(program, ExactMatch(), task)
    return OptimizationSetup(
        program=program, trainset=examples("t", train), valset=examples("v", val), evaluator=evaluator,
        task_lm=task, proposer_lm=prop, **kw,
    )  # fmt: skip


def history_block(prompt: str) -> list[tuple[str, str]]:
    return re.findall(r"text:\n(.*?)\nscore:\n(\S+)", prompt)


async def test_meta_prompt_lists_history_ascending_with_bucketized_scores_and_best_last():
    # step 1 proposes levels 3, 7, 5 (scores 30, 70, 50 on 10 training examples); step 2's prompt shows them
    levels = [3, 7, 5, 7]
    log: list = []
    prop = proposer([f"<INS>Use level {n}.</INS>" for n in levels] + ["<INS>Use level 1.</INS>"] * 8, log)
    setup = make_setup(prop)
    await OPRO(steps=2, candidates_per_step=4).optimize(setup)
    step2 = log[4].messages[0][1]
    assert history_block(step2) == [
        (START, "0"),
        ("Use level 3.", "30"),
        ("Use level 5.", "50"),
        ("Use level 7.", "70"),
    ]
    assert "listed in ascending order of score" in step2
    assert 'step "qa"' in step2 and 'reads "Question" and writes "Answer"' in step2
    assert step2.rstrip().endswith("Write only the instruction, between <INS> and </INS>.")
    # the first prompt held the start alone
    assert history_block(log[0].messages[0][1]) == [(START, "0")]


async def test_meta_prompt_keeps_only_the_best_twenty():
    prop = proposer([f"<INS>Try level {n}.</INS>" for n in range(1, 26)] + ["<INS>Try level 1.</INS>"])
    setup = make_setup(prop, train=25)
    log: list = []
    setup.proposer_lm.backend.respond = (lambda orig: lambda r: (log.append(r), orig(r))[1])(
        setup.proposer_lm.backend.respond
    )
    await OPRO(steps=2, candidates_per_step=25, val_every=5).optimize(setup)
    shown = history_block(log[25].messages[0][1])
    assert len(shown) == 20
    assert [int(s) for _, s in shown] == list(range(24, 104, 4))  # levels 6..25 of 25, ascending
    assert all(t != START for t, _ in shown)  # the start (score 0) fell out


def test_history_orders_and_buckets():
    h = History()
    for i, v in enumerate([0.5, 0.9, 0.1, 0.7]):
        h.add(f"k{i}", f"s{i}", f"s{i}", v, 0)
    assert [s.value for s in h.shown(3, "ascending")] == [0.5, 0.7, 0.9]
    assert [s.value for s in h.shown(3, "descending")] == [0.9, 0.7, 0.5]
    shuffled = [s.value for s in h.shown(4, "random", random.Random(1))]
    assert sorted(shuffled) == [0.1, 0.5, 0.7, 0.9]
    assert shuffled == [s.value for s in h.shown(4, "random", random.Random(1))]
    assert not h.add("k0", "again", "again", 1.0, 1) and len(h) == 4
    losses = History(minimize=True)
    for i, v in enumerate([10.0, 3.0, 7.0]):
        losses.add(i, i, str(i), v, 0)
    assert [s.value for s in losses.shown(3, "ascending")] == [10.0, 7.0, 3.0]  # best (lowest) last
    assert order_word("ascending", minimize=True) == "descending"
    assert bucketize(0.734, 100) == "73"
    assert bucketize(0.734, 20) == "75"
    assert bucketize(0.734, None) == "73.4"
    assert bucketize(1.0, 3) == "100" and bucketize(0.5, 3) == "66.7"
    with pytest.raises(ValueError, match="history order"):
        h.shown(3, "sideways")


@pytest.mark.parametrize(
    "order, expected",
    [("descending", ["70", "30", "0"]), ("ascending", ["0", "30", "70"])],
)
async def test_history_order_switch_reaches_the_prompt(order, expected):
    log: list = []
    prop = proposer(["<INS>level 3</INS>", "<INS>level 7</INS>", "<INS>level 1</INS>", "<INS>level 1</INS>"], log)
    await OPRO(steps=2, candidates_per_step=2, history_order=order).optimize(make_setup(prop))
    assert [s for _, s in history_block(log[2].messages[0][1])] == expected
    assert f"listed in {order} order" in log[2].messages[0][1]


async def test_score_buckets_switch_reaches_the_prompt():
    log: list = []
    prop = proposer(["<INS>level 3</INS>", "<INS>level 1</INS>"], log)
    await OPRO(steps=2, candidates_per_step=1, score_buckets=4).optimize(make_setup(prop))
    assert [s for _, s in history_block(log[1].messages[0][1])] == ["0", "25"]  # 0.3 -> nearest quarter


async def test_exemplars_are_drawn_from_train_each_step_with_the_seed():
    async def run(seed: int, n_exemplars: int = 3) -> list[str]:
        log: list = []
        setup = make_setup(proposer(["<INS>level 1</INS>"], log), train=12, seed=seed)
        await OPRO(steps=3, candidates_per_step=1, n_exemplars=n_exemplars).optimize(setup)
        return [r.messages[0][1] for r in log]

    a, b, c = await run(0), await run(0), await run(5)
    shown = [re.findall(r"Question: (t-q\d+)", p) for p in a]
    assert all(len(s) == 3 and len(set(s)) == 3 for s in shown)
    assert len({tuple(s) for s in shown}) > 1  # a new draw each step
    assert a == b and a != c  # the same seed replays, another seed draws others
    assert all("output:\nAnswer: t-a" in p for p in a)
    assert all("v-q" not in p for p in a)  # never validation examples
    none = await run(0, n_exemplars=0)
    assert "(no exemplars)" in none[0] and "Question:" not in none[0]


async def test_proposals_sample_at_temperature_one_with_distinct_indices_and_task_at_zero():
    plog, tlog = [], []
    setup = make_setup(proposer([f"<INS>level {i}</INS>" for i in range(1, 30)], plog), leveled_task_lm(tlog))
    await OPRO(steps=3).optimize(setup)
    assert len(plog) == 24
    assert {r.temperature for r in plog} == {1.0}
    assert sorted(r.sample_index for r in plog) == list(range(24))
    assert {r.temperature for r in tlog} == {0.0}


async def test_temperature_and_candidates_switches():
    plog: list = []
    setup = make_setup(proposer(["<INS>level 2</INS>"], plog))
    await OPRO(steps=2, candidates_per_step=3, temperature=0.5).optimize(setup)
    assert len(plog) == 6 and {r.temperature for r in plog} == {0.5}


async def test_duplicates_are_never_scored_twice():
    tlog: list = []
    replies = ["<INS>level 4</INS>", "<INS>  level   4 </INS>", f"<INS>{START}</INS>", "[level 4]"]
    setup = make_setup(proposer(replies), leveled_task_lm(tlog))
    result = await OPRO(steps=2, candidates_per_step=4, val_every=10).optimize(setup)
    train_trials = [t for t in result.trials if not t.full]
    assert [t.info["instruction"] for t in train_trials] == [START, "level 4"]
    rows = result.info["steps"]
    assert [(r["new"], r["duplicates"]) for r in rows] == [(1, 3), (0, 4)]
    per_instruction: dict[str, int] = {}
    for r in tlog:
        instruction = instruction_of(r.messages[0][1])
        per_instruction[instruction] = per_instruction.get(instruction, 0) + 1
    assert per_instruction["level 4"] == 10 + 10  # 10 train examples once, then 10 validation examples once


async def test_early_stop_when_validation_stalls():
    # every proposal is worse than the start on validation: no gain, so stop after `patience` rounds
    task = leveled_task_lm()
    setup = make_setup(proposer([f"<INS>level {i}</INS>" for i in range(1, 100)]), task)
    setup.start = Candidate({"qa": PromptParams("level 10")})
    events = []
    setup.events = lambda kind, data: events.append(kind)
    result = await OPRO(steps=20, candidates_per_step=2, val_every=2, patience=3).optimize(setup)
    assert result.stopped_by == "early_stop"
    assert len(result.info["steps"]) == 6  # 3 validation rounds, every 2 steps
    assert "early_stop" in events
    assert result.best["qa"].instruction == "level 10" and result.best_score == 1.0 == result.start_score


async def test_no_early_stop_while_validation_improves():
    setup = make_setup(proposer([f"<INS>level {i}</INS>" for i in range(1, 100)]), train=10, val=40)
    result = await OPRO(steps=4, candidates_per_step=2, val_every=1, patience=1).optimize(setup)
    assert result.stopped_by == "completed" and len(result.info["steps"]) == 4
    assert result.best_score > result.start_score


async def test_result_is_chosen_on_validation_not_training():
    # "level 9" is perfect on the 9 training questions that exist, but validation has 30 questions
    def respond(req):
        text = "\n".join(c for _, c in req.messages)
        user = [c for r, c in req.messages if r == "user"][-1]
        prefix, i = re.search(r"(\w+)-q(\d+)", user).groups()
        good = ("memorize" in text and prefix == "t") or ("generalize" in text and (prefix == "v" or int(i) < 5))
        return write_reply(req.messages[0][1], {"answer": f"{prefix}-a{i}" if good else "no"})

    task = LM(ScriptedBackend(respond, name="task"), cache=False)
    prop = proposer(["<INS>memorize</INS>", "<INS>generalize</INS>"])
    setup = make_setup(prop, task, train=10, val=30)
    result = await OPRO(steps=1, candidates_per_step=2, val_top_k=2).optimize(setup)
    train_scores = {t.info["instruction"]: t.score for t in result.trials if not t.full}
    assert train_scores["memorize"] == 1.0 > train_scores["generalize"] == 0.5
    assert result.best["qa"].instruction == "generalize" and result.best_score == 1.0


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("<INS>Think step by step.</INS>", "Think step by step."),
        ("Sure! Here it is:\n<INS>\n  Think  carefully.\n</INS>\nscore: 99", "Think  carefully."),
        ("<INS>...</INS> <INS>Real one.</INS>", "Real one."),
        ("<INS>Open tag only, no close\n\nchatter", "Open tag only, no close"),
        ("[Answer with one word.]", "Answer with one word."),
        ('New instruction: "Be precise."', "Be precise."),
        ("Here is a new instruction:\n\nList the facts, then answer.", "List the facts, then answer."),
        ("text:\nSolve it carefully.\nscore:\n88", "Solve it carefully."),
        ("<Classify the question.</INS>", "Classify the question."),
        ("<INS>A.</INS>\n<INS>Question: q?</INS>", "A."),
        ("<INS></INS>", None),
        # an exemplar echoed with the placeholder inside, closed or not: not an instruction
        ("<INS>\nQuestion: What is the capital of France ?\n<INS>\noutput:\nAnswer: Paris\n</INS>", None),
        ("<INS>\nQuestion: What is the largest city ?\n<INS>\noutput:\nAnswer: New York City", None),
        ("Some chatter first.\n\n<INS>...</INS>", None),
        ("<INS>your instruction</INS>", None),
        ("", None),
    ],
)
def test_parse_instruction_is_tolerant(reply, expected):
    assert parse_instruction(reply) == expected


def test_parse_instruction_refuses_overlong_text():
    assert parse_instruction("<INS>" + "x" * 50 + "</INS>", max_chars=20) is None


async def test_unparsed_replies_are_counted_not_scored():
    setup = make_setup(proposer(["I cannot help with that:", "<INS>level 2</INS>"]))
    result = await OPRO(steps=1, candidates_per_step=2).optimize(setup)
    assert result.info["steps"][0]["unparsed"] == 1 and result.info["steps"][0]["new"] == 1


@pytest.mark.parametrize("start, shown", [(None, START), ("", "(empty)"), ("level 2", "level 2")])
async def test_start_instruction_switch(start, shown):
    log: list = []
    setup = make_setup(proposer(["<INS>level 1</INS>"], log))
    result = await OPRO(steps=1, candidates_per_step=1, start_instruction=start).optimize(setup)
    assert history_block(log[0].messages[0][1])[0][0] == shown
    assert result.start_score == 0.0  # the program's own start is always scored on validation first
    assert result.trials[0].full and result.trials[0].candidate == setup.start


# ------------------------------------------------------------------------------------------ positions


SIG = Signature(inputs={"question": ""}, outputs={"answer": ""})


def test_positions_render_the_instruction_in_place():
    q = {"question": "2+2?"}
    system = render_messages(SIG, PromptParams("Be brief."), q)
    assert system[0]["content"].startswith("Be brief.") and system[-1] == {"role": "user", "content": "Question: 2+2?"}
    begin = render_messages(SIG, PromptParams("Be brief.", position="question_begin"), q)
    assert "Be brief." not in begin[0]["content"]
    assert begin[-1] == {"role": "user", "content": "Be brief.\n\nQuestion: 2+2?"}
    end = render_messages(SIG, PromptParams("Be brief.", position="question_end"), q)
    assert end[-1] == {"role": "user", "content": "Question: 2+2?\n\nBe brief."}
    answer = render_messages(SIG, PromptParams("Be brief.", position="answer_start"), q)
    assert answer[-2] == {"role": "user", "content": "Question: 2+2?"}
    assert answer[-1] == {"role": "assistant", "content": "Be brief."}
    assert "Be brief." not in answer[0]["content"]
    # demos stay plain worked examples wherever the instruction goes
    demo = PromptParams("Be brief.", ({"question": "1+1?", "answer": "2"},), position="question_begin")
    assert render_messages(SIG, demo, q)[1] == {"role": "user", "content": "Question: 1+1?"}
    # an empty instruction adds nothing anywhere
    assert render_messages(SIG, PromptParams("", position="answer_start"), q)[-1]["role"] == "user"


def test_position_is_part_of_the_candidate_and_old_hashes_do_not_move():
    plain = Candidate({"qa": PromptParams("x")})
    assert plain.to_dict()["modules"]["qa"] == {"instruction": "x", "demos": []}  # no key for the default
    moved = Candidate({"qa": PromptParams("x", position="question_end")})
    assert moved != plain and moved.hash != plain.hash
    assert Candidate.from_json(moved.to_json()) == moved
    assert PromptParams("x", position="question_end").with_instruction("y").position == "question_end"
    assert PromptParams("x", position="question_end").with_demos([]).position == "question_end"
    with pytest.raises(ValueError, match="instruction position must be one of"):
        PromptParams("x", position="footer")


@pytest.mark.parametrize(
    "position, where",
    [
        ("question_begin", lambda msgs: msgs[-1]["content"].startswith("level 10\n\n")),
        # right after the question: before the reminder of the outputs that formats other than "labels" end with
        (
            "question_end",
            lambda msgs: re.match(r"Question: [tv]-q\d+\n\nlevel 10(\n\nReply with |$)", msgs[-1]["content"]),
        ),
        ("answer_start", lambda msgs: msgs[-1] == {"role": "assistant", "content": "level 10"}),
    ],
)
async def test_opro_places_proposals_at_the_chosen_position(position, where):
    tlog: list = []
    log: list = []
    setup = make_setup(proposer(["<INS>level 10</INS>"], log), leveled_task_lm(tlog))
    result = await OPRO(steps=1, candidates_per_step=1, position=position).optimize(setup)
    sent = [r.chat for r in tlog if "level 10" in "".join(c for _, c in r.messages)]
    assert sent and all(where(m) for m in sent)
    assert result.best["qa"].position == position and result.best_score == 1.0
    assert "<INS>" in log[0].messages[0][1]
    if position == "answer_start":
        assert "output:\n<INS>\nAnswer: t-a" in log[0].messages[0][1]
    elif position == "question_end":
        assert re.search(r"Question: t-q\d+\n<INS>\noutput:", log[0].messages[0][1])


# ---------------------------------------------------------------------------------------------- modules


class TwoStep(Program):
    def __init__(self) -> None:
        self.rewrite = Predict("question -> note", instruction="Rewrite.")
        self.answer = Predict("note -> answer", instruction="Answer.")

    def forward(self, question: str) -> dict:
        note = self.rewrite(question=question).note
        return {"answer": self.answer(note=note).answer}


def two_step_task_lm() -> LM:
    """The rewrite step keeps the question only when told to; the answer step answers half of the kept
    questions, all of them when told to copy: each module's instruction matters end to end."""

    def task(req):
        system, user = req.messages[0][1], req.messages[-1][1]
        told = instruction_of(system)
        if "Note:" not in user:  # the rewrite step: passes the question on only when told to
            q = re.search(r"t-q\d+|v-q\d+", user).group(0)
            return write_reply(system, {"note": q if told.startswith("keep") else "lost"})
        m = re.search(r"(\w)-q(\d+)", user)  # lost notes are never answered; kept ones: half, or all when told
        ok = m and (told.startswith("copy") or int(m.group(2)) < 5)
        return write_reply(system, {"answer": f"{m.group(1)}-a{m.group(2)}" if ok else "no"})

    return LM(ScriptedBackend(task, name="task"), cache=False)


async def test_several_modules_are_optimized_in_turn_end_to_end():
    plog: list = []

    def respond(req):
        plog.append(req)
        prompt = req.messages[0][1]
        return "<INS>keep the question</INS>" if 'step "rewrite"' in prompt else "<INS>copy the number</INS>"

    prop = LM(ScriptedBackend(respond, name="proposer"), cache=False)
    setup = make_setup(prop, two_step_task_lm(), program=TwoStep())
    result = await OPRO(steps=1, candidates_per_step=1).optimize(setup)
    assert ['step "rewrite"' in r.messages[0][1] for r in plog] == [True, False]
    assert 'reads "Note" and writes "Answer"' in plog[1].messages[0][1]
    assert result.best["rewrite"].instruction == "keep the question"
    assert result.best["answer"].instruction == "copy the number"
    assert result.best_score == 1.0 and result.start_score == 0.0
    # the second module was proposed on top of the first module's best, scored end to end
    second = [t for t in result.trials if t.info.get("module") == "answer" and not t.full]
    assert all(t.candidate["rewrite"].instruction == "keep the question" for t in second)
    assert {m: info["stopped_by"] for m, info in result.info["modules"].items()} == {
        "rewrite": "completed",
        "answer": "completed",
    }


async def test_modules_setting_restricts_and_is_checked():
    setup = make_setup(proposer(["<INS>x</INS>"]), two_step_task_lm(), program=TwoStep())
    result = await OPRO(steps=1, candidates_per_step=1, modules=["answer"]).optimize(setup)
    assert {t.info.get("module") for t in result.trials} == {None, "answer"}
    with pytest.raises(ValueError, match="not in the program"):
        await OPRO(modules=["nope"]).optimize(make_setup(proposer(["x"]), program=TwoStep()))


# ----------------------------------------------------------------------------- budget, settings, registry


async def test_budget_stops_cleanly_with_the_best_validated_so_far():
    setup = make_setup(proposer([f"<INS>level {i}</INS>" for i in range(1, 99)]), budget=Budget(max_lm_calls=120))
    result = await OPRO(steps=50).optimize(setup)
    assert result.stopped_by == "lm_calls"
    assert result.best_score == max(t.score for t in result.trials if t.full)
    assert len(result.info["steps"]) == 1  # step 1 finished; step 2 was cut while scoring its proposals
    assert len(result.info["modules"]["qa"]["history"]) > 9  # and what step 2 scored is kept


def test_settings_are_checked_and_defaults_are_the_papers():
    opt = make_optimizer("opro")
    assert isinstance(opt, OPRO)
    s = opt.settings
    assert (s.candidates_per_step, s.temperature, s.max_history, s.history_order) == (8, 1.0, 20, "ascending")
    assert (s.score_buckets, s.n_exemplars, s.position) == (100, 3, "system")
    for bad in (
        {"history_order": "sideways"},
        {"temperature": 3},
        {"candidates_per_step": 0},
        {"position": "footer"},
        {"score_buckets": 0},
        {"steps": 1.5},
    ):
        with pytest.raises(ValueError):
            OPRO(**bad)


def test_estimate_counts_the_calls_of_a_full_run():
    setup = make_setup(proposer(["<INS>x</INS>"]), train=10, val=10)
    est = OPRO(steps=4, candidates_per_step=8, val_every=2, val_top_k=2).estimate(setup)
    assert est["proposer"]["calls"] == 32
    # (1 start + 32 proposals) x 10 train + (1 start + 2 rounds x 2) x 10 validation
    assert est["task"]["calls"] == 33 * 10 + 5 * 10
    assert est["proposer"]["prompt_tokens"] > 0


async def test_training_subset_is_fixed_and_seeded():
    tlog: list = []
    setup = make_setup(proposer([f"<INS>level {i}</INS>" for i in range(1, 40)]), leveled_task_lm(tlog), train=30)
    result = await OPRO(steps=2, candidates_per_step=2, train_batch=8, val_every=10).optimize(setup)
    assert {t.n for t in result.trials if not t.full} == {8}
    seen = {re.search(r"t-q\d+", r.messages[-1][1]).group(0) for r in tlog if "t-q" in r.messages[-1][1]}
    assert len(seen) == 8


async def test_a_rerun_with_the_same_seed_replays_every_proposal_from_the_cache(tmp_path):
    def respond(req):
        return f"<INS>level {1 + (req.sample_index * 7 + len(req.messages[0][1])) % 10}</INS>"

    backend = ScriptedBackend(respond, name="proposer")
    runs = []
    for _ in range(2):
        prop = LM(backend, cache=tmp_path / "responses.sqlite")
        result = await OPRO(steps=3, candidates_per_step=4, history_order="random").optimize(make_setup(prop))
        runs.append((result, prop.usage.paid_calls))
    (first, paid_first), (second, paid_second) = runs
    assert paid_first == 12 and paid_second == 0 and len(backend.requests) == 12
    assert [t.info.get("instruction") for t in first.trials] == [t.info.get("instruction") for t in second.trials]
    assert first.best == second.best
