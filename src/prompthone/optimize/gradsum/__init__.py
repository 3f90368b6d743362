"""GRAD-SUM: textual gradients from judged failures, summarized into one direction, with a beam of prompts.

`GradSum` is the method; `GradSumNoSummary` is its ablation without summarization (ProTeGi-style edits
from a few single failures at a time). Both are registered as "gradsum" and "gradsum-nosum".
"""

from prompthone.optimize.gradsum.optimizer import BeamEntry, GradSum, GradSumNoSummary
from prompthone.optimize.gradsum.steps import Failure, Gradient, read_instruction, read_module_name

__all__ = ["BeamEntry", "Failure", "GradSum", "GradSumNoSummary", "Gradient", "read_instruction", "read_module_name"]
