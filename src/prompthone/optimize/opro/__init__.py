"""OPRO (Optimization by PROmpting, Yang et al. 2023): the LLM as optimizer, for the instructions of a
program and for small numeric problems, from one meta-prompt machinery (`meta`)."""

from prompthone.optimize.opro.meta import ORDERS, History, Scored, bucketize, parse_instruction
from prompthone.optimize.opro.numeric import (
    TSP,
    LinearRegression,
    NumericProblem,
    NumericRun,
    held_karp,
    nearest_neighbour,
    plot_run,
    run_numeric,
    tour_length,
)
from prompthone.optimize.opro.optimizer import OPRO

__all__ = [
    "OPRO",
    "ORDERS",
    "TSP",
    "History",
    "LinearRegression",
    "NumericProblem",
    "NumericRun",
    "Scored",
    "bucketize",
    "held_karp",
    "nearest_neighbour",
    "parse_instruction",
    "plot_run",
    "run_numeric",
    "tour_length",
]
