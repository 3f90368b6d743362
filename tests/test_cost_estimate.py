"""The dry-run estimate renders a module's prompt as the module sends it: in its own format and position."""

import math

import pytest

from prompthone.data.example import Example
from prompthone.optimize.proposers.cost import CHARS_PER_TOKEN, module_call_tokens
from prompthone.program import ChainOfThought, Demo, Predict, render_messages
from prompthone.program.params import PROMPT_FORMATS

EXAMPLES = [Example(id=f"e{i}", inputs={"question": f"question {i}?"}, labels={"answer": f"a{i}"}) for i in range(3)]


def sent_tokens(module, example: Example, demo_source: Example, n_demos: int) -> int:
    demo = Demo(question=demo_source.inputs["question"], answer=demo_source.labels["answer"])
    params = module.params.with_demos([demo] * n_demos)
    msgs = render_messages(module.signature, params, example.inputs)
    return sum(math.ceil(len(m["content"]) / CHARS_PER_TOKEN) + 4 for m in msgs)


@pytest.mark.parametrize(
    "module", [Predict("question -> answer"), *(Predict("question -> answer", format=f) for f in PROMPT_FORMATS)]
)
@pytest.mark.parametrize("n_demos", [0, 2])
def test_the_estimated_prompt_is_the_one_the_module_sends(module, n_demos):
    prompt, _ = module_call_tokens(module, EXAMPLES, n_demos, max_tokens=64)
    expected = [sent_tokens(module, ex, EXAMPLES[(i + 1) % 3], n_demos) for i, ex in enumerate(EXAMPLES)]
    assert prompt == pytest.approx(sum(expected) / 3)


def test_a_moved_instruction_is_estimated_where_it_goes():
    module = ChainOfThought("question -> answer", instruction="Think. " * 50)
    module.params = module.params.with_position("answer_start")
    prompt, _ = module_call_tokens(module, EXAMPLES, 0, max_tokens=64)
    expected = [sent_tokens(module, ex, ex, 0) for ex in EXAMPLES]
    assert prompt == pytest.approx(sum(expected) / 3)
