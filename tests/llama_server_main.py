"""`python -m llama_cpp.server` with a lean RAM prompt cache, for benchmarks that alternate between a few long
prompt prefixes (the modules of a multi-stage program, each with its demos).

llama-cpp-python's `LlamaRAMCache` stores, with each evaluated prompt's llama.cpp state, a copy of the logits
of every prompt token (n_tokens x vocabulary floats: 1.8 GB for a 3,000-token prompt of Qwen2.5), counts
only the state against `--cache_size`, and on every reload zeroes the logits buffer of the whole context.
Measured here (2026-12-05): a 4 GiB cache grew the server to 24 GB and the kernel killed it mid-benchmark;
a reloaded prefix still cost 8-10 s. Those logits are never read when the server does not keep logits for
every token (`logits_all`, only needed for prompt logprobs, which no benchmark asks for): generation always
evaluates at least the prompt's last token again after a reload. So this launcher stores the state only;
`--cache_size` then bounds what the cache holds. It refuses `--logits_all true`.
"""

from __future__ import annotations

import ctypes
import runpy
import sys

import llama_cpp
import numpy as np
from llama_cpp.llama import Llama, LlamaState


def _save_state(self: Llama) -> LlamaState:
    size = llama_cpp.llama_state_get_size(self._ctx.ctx)
    buf = (ctypes.c_uint8 * int(size))()
    n = int(llama_cpp.llama_state_get_data(self._ctx.ctx, buf, size))
    if n > int(size):
        raise RuntimeError("Failed to copy llama state data")
    return LlamaState(
        scores=np.empty((0, self.n_vocab()), dtype=np.single),
        input_ids=self.input_ids.copy(),
        n_tokens=self.n_tokens,
        llama_state=bytes(buf[:n]),
        llama_state_size=n,
        seed=self._seed,
    )


def _load_state(self: Llama, state: LlamaState) -> None:
    self.input_ids = state.input_ids.copy()
    self.n_tokens = state.n_tokens
    self._requires_eval = True
    self._seed = state.seed
    data = (ctypes.c_uint8 * state.llama_state_size).from_buffer_copy(state.llama_state)
    if llama_cpp.llama_state_set_data(self._ctx.ctx, data, state.llama_state_size) != state.llama_state_size:
        raise RuntimeError("Failed to set llama state data")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--logits_all" in args and args[args.index("--logits_all") + 1].lower() in ("true", "1"):
        raise SystemExit("llama_server_main.py: --logits_all keeps every token's logits, which this cache drops")
    Llama.save_state, Llama.load_state = _save_state, _load_state  # type: ignore[method-assign]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
