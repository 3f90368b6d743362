"""Examples, loaders, seeded splits, benchmark readers, BM25 retrieval and the shipped demo datasets."""

from prompthone.data.benchmarks import (
    BBH_MULTIPLE_CHOICE,
    BBH_TASKS,
    GSM8K_SPLITS,
    SST2_SPLITS,
    TREC_CLASSES,
    TREC_SPLITS,
    HotpotDistractor,
    load_bbh,
    load_bbh_cot_prompt,
    load_gsm8k,
    load_hotpotqa_dev,
    load_hotpotqa_distractor,
    load_hotpotqa_ircot500,
    load_multiarith,
    load_sst2,
    load_trec,
)
from prompthone.data.errors import DataError, DataRootNotFoundError, SplitOverlapError
from prompthone.data.example import Example
from prompthone.data.frozen import FrozenMap
from prompthone.data.loaders import load_examples
from prompthone.data.root import ENV_VAR, find_data_root
from prompthone.data.shipped import load_gsm8k_mini, load_trec_mini
from prompthone.data.splits import (
    ContentDuplicate,
    Split,
    check_disjoint,
    dedupe_by_content,
    find_content_duplicates,
    split,
)

__all__ = [
    "BBH_MULTIPLE_CHOICE",
    "BBH_TASKS",
    "ENV_VAR",
    "GSM8K_SPLITS",
    "SST2_SPLITS",
    "TREC_CLASSES",
    "TREC_SPLITS",
    "ContentDuplicate",
    "DataError",
    "DataRootNotFoundError",
    "Example",
    "FrozenMap",
    "HotpotDistractor",
    "Split",
    "SplitOverlapError",
    "check_disjoint",
    "dedupe_by_content",
    "find_content_duplicates",
    "find_data_root",
    "load_bbh",
    "load_bbh_cot_prompt",
    "load_examples",
    "load_gsm8k",
    "load_gsm8k_mini",
    "load_hotpotqa_dev",
    "load_hotpotqa_distractor",
    "load_hotpotqa_ircot500",
    "load_multiarith",
    "load_sst2",
    "load_trec",
    "load_trec_mini",
    "split",
]
