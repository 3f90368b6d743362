"""MIPRO and its variants: `MIPRO`, `MIPRO0Shot`, `BayesianBootstrap`, `MIPROPlusPlus` (see `optimizer`)."""

from prompthone.optimize.mipro.estimate import estimate_mipro
from prompthone.optimize.mipro.optimizer import (
    MIPRO,
    PLUS_TEMPERATURES,
    BayesianBootstrap,
    MIPRO0Shot,
    MIPROFamily,
    MIPROPlusPlus,
)
from prompthone.optimize.mipro.search import MinibatchSchedule, derived_seed
from prompthone.optimize.mipro.settings import PRESETS, MIPROSettings
from prompthone.optimize.mipro.study import MIPRORun, Pool

__all__ = [
    "MIPRO",
    "PLUS_TEMPERATURES",
    "PRESETS",
    "BayesianBootstrap",
    "MIPRO0Shot",
    "MIPROFamily",
    "MIPROPlusPlus",
    "MIPRORun",
    "MIPROSettings",
    "MinibatchSchedule",
    "Pool",
    "derived_seed",
    "estimate_mipro",
]
