"""Readers for the public benchmarks under the data root (see `prompthone.data.root.find_data_root`)."""

from prompthone.data.benchmarks.bbh import BBH_MULTIPLE_CHOICE, BBH_TASKS, load_bbh, load_bbh_cot_prompt
from prompthone.data.benchmarks.gsm8k import GSM8K_SPLITS, load_gsm8k, parse_gsm8k_answer
from prompthone.data.benchmarks.hotpotqa import (
    HotpotDistractor,
    format_passage,
    load_hotpotqa_dev,
    load_hotpotqa_distractor,
    load_hotpotqa_ircot500,
)
from prompthone.data.benchmarks.multiarith import load_multiarith
from prompthone.data.benchmarks.sst2 import SST2_LABELS, SST2_SPLITS, load_sst2
from prompthone.data.benchmarks.trec import TREC_CLASSES, TREC_SPLITS, load_trec

__all__ = [
    "BBH_MULTIPLE_CHOICE",
    "BBH_TASKS",
    "GSM8K_SPLITS",
    "SST2_LABELS",
    "SST2_SPLITS",
    "TREC_CLASSES",
    "TREC_SPLITS",
    "HotpotDistractor",
    "format_passage",
    "load_bbh",
    "load_bbh_cot_prompt",
    "load_gsm8k",
    "load_hotpotqa_dev",
    "load_hotpotqa_distractor",
    "load_hotpotqa_ircot500",
    "load_multiarith",
    "load_sst2",
    "load_trec",
    "parse_gsm8k_answer",
]
