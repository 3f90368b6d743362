"""OPRO (Optimization by PROmpting, Yang et al. 2023): the LLM as optimizer, for the instructions of a
program. The paper's numeric problems are an experiment: `prompthone.experiments.opro_numeric`."""

from prompthone.optimize.opro.meta import ORDERS, History, Scored, bucketize, parse_instruction
from prompthone.optimize.opro.optimizer import OPRO

__all__ = ["OPRO", "ORDERS", "History", "Scored", "bucketize", "parse_instruction"]
