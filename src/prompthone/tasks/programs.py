"""The starting programs of the built-in tasks: deliberately plain, so an optimizer has work to do.

A proposer is shown a program's source (MIPRO's `ground_program`), docstrings included, so the classes'
docstrings say what the program does for its user and nothing about how prompthone optimizes it: the
0.5B proposer once turned "the credit-assignment problem MIPRO addresses" into an instruction. The query
step of `MultiHopQA` is that problem: it is credited only through the final answer.
"""

from __future__ import annotations

from prompthone.data.retrieval import BM25Index
from prompthone.program import ChainOfThought, Predict, Program, Signature


class Reason(Program):
    """One chain-of-thought step: question -> reasoning, answer."""

    def __init__(self, instruction: str, answer_desc: str = "the final answer") -> None:
        signature = Signature(inputs={"question": ""}, outputs={"answer": answer_desc}, instruction=instruction)
        self.solve = ChainOfThought(signature)

    def forward(self, question: str) -> dict:
        pred = self.solve(question=question)
        return {"answer": pred.answer, "reasoning": pred.reasoning}


class Classify(Program):
    """One direct prediction from the input text to a label."""

    def __init__(self, signature: Signature | str, instruction: str, output: str) -> None:
        self.classify = Predict(signature, instruction=instruction)
        self._output = output

    def forward(self, **inputs: str) -> dict:
        pred = self.classify(**inputs)
        return {self._output: pred[self._output]}


class MultiHopQA(Program):
    """Two steps around a retriever: write a search query for the question, retrieve passages, answer from
    them. Only the final answer is labelled, so a query is judged by the answer it leads to."""

    def __init__(self, corpus: tuple[str, ...] | list[str], k: int = 3) -> None:
        self.query = Predict(
            "question -> search_query", instruction="Write a search query that finds the facts needed."
        )
        self.answer = Predict("context, question -> answer", instruction="Answer the question using the context.")
        self.k = k
        self._index = BM25Index(list(corpus))

    def retrieve(self, query: str) -> list[str]:
        return self._index.search(query, k=self.k)

    def forward(self, question: str) -> dict:
        q = self.query(question=question).search_query or question
        passages = self.retrieve(q)
        pred = self.answer(context=passages, question=question)
        return {"answer": pred.answer, "search_query": q}
