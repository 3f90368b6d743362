"""The embedded model: a GGUF file run in-process by llama.cpp.

One `Llama` object per file per process, shared by every `LM` that names it; calls are serialized on
it (llama.cpp contexts are not re-entrant) in a worker thread, so the event loop keeps serving other
work. Runaway generations are cut on our side at a wall-clock deadline and reported as timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prompthone.lm import settings
from prompthone.lm.backend import Backend, PerLoop
from prompthone.lm.errors import ConfigError, ContextTooLongError, LMError, LMTimeoutError
from prompthone.lm.local.assemble import resolve_gguf
from prompthone.lm.types import Generation, Request

log = logging.getLogger(__name__)


@dataclass
class _Loaded:
    llama: Any
    lock: threading.Lock


_LOADED: dict[tuple[str, int, int], _Loaded] = {}
_LOAD_LOCK = threading.Lock()


def _import_llama():
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ConfigError(
            "the embedded model needs llama-cpp-python, which is not installed. "
            'Install it with: pip install "prompthone[local]"'
        ) from exc
    return Llama


def _warn_if_amx_build() -> None:
    """A native build with AMX kernels crashes in batch decoding on some VMs; say so before it does."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    if b"AMX_INT8 = 1" in (info if isinstance(info, bytes) else str(info).encode()):
        log.warning(
            "llama-cpp-python was built with AMX kernels, which crash on some virtual machines. If the "
            'process dies with a segmentation fault, reinstall it with CMAKE_ARGS="-DGGML_NATIVE=OFF '
            '-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" pip install --no-cache-dir --force-reinstall '
            "--no-deps llama-cpp-python==0.3.36 (the Makefile does this)"
        )


def load_llama(path: Path, *, n_ctx: int, n_threads: int) -> _Loaded:
    """Load (once per process) and return the shared model for `path`."""
    key = (str(path), n_ctx, n_threads)
    with _LOAD_LOCK:
        if key not in _LOADED:
            Llama = _import_llama()
            _warn_if_amx_build()
            with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                llama = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    seed=0,
                    verbose=False,
                )
            _LOADED[key] = _Loaded(llama=llama, lock=threading.Lock())
        return _LOADED[key]


class LocalBackend(Backend):
    """An embedded GGUF model (`local/<name>` or `local/<path>.gguf`)."""

    kind = "local"
    max_concurrency = 1
    one_at_a_time = True  # one context, one request at a time; llama-cpp-python reuses the prompt prefix

    def __init__(self, model: str, *, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        super().__init__(model)
        self.path, self._file_identity = resolve_gguf(model, progress=True)
        self.n_ctx = int(n_ctx)
        self.n_threads = int(n_threads or settings.default_threads())
        self._gate: PerLoop[asyncio.Semaphore] = PerLoop(lambda: asyncio.Semaphore(1))

    def identity(self) -> str:
        # The file's content identity plus the context size: threads do not change greedy answers.
        return f"llama.cpp:{self._file_identity}:ctx{self.n_ctx}"

    def loaded(self) -> _Loaded:
        return load_llama(self.path, n_ctx=self.n_ctx, n_threads=self.n_threads)

    async def generate(self, request: Request, *, timeout_s: float) -> Generation:
        loaded = self.loaded()
        async with self._gate.get():  # one waiting thread per loop, not one per queued request
            return await asyncio.to_thread(self._generate_blocking, loaded, request, timeout_s)

    def _generate_blocking(self, loaded: _Loaded, request: Request, timeout_s: float) -> Generation:
        deadline = time.monotonic() + timeout_s
        timed_out = False
        eos = loaded.llama.token_eos()

        def stop_at_deadline(input_ids, scores):
            """Past the deadline, force end-of-sequence: llama.cpp has no other way to stop mid-call."""
            nonlocal timed_out
            if time.monotonic() > deadline:
                timed_out = True
                scores[:] = -float("inf")
                scores[eos] = 0.0
            return scores

        kwargs: dict[str, Any] = dict(
            messages=request.chat,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            stop=list(request.stop) or None,
            seed=request.effective_seed(),
        )
        schema = request.schema
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        with loaded.lock:
            before = _evaluated_tokens(loaded.llama)
            try:
                out = self._chat(loaded.llama, kwargs, stop_at_deadline)
            except ValueError as exc:
                msg = str(exc)
                if "context" in msg.lower() or "exceed" in msg.lower():
                    raise ContextTooLongError(
                        f"{msg} (model {self.model}, n_ctx={self.n_ctx}): shorten the prompt, lower "
                        "max_tokens, or raise n_ctx",
                        model=self.model,
                    ) from exc
                raise LMError(f"llama.cpp failed on model {self.model}: {msg}", model=self.model) from exc
            usage = out.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens", 0))
            reused = reused_prefix(before, _evaluated_tokens(loaded.llama), prompt_tokens)
        if timed_out:
            raise LMTimeoutError(
                f"generation on {self.model} passed the {timeout_s:g}s timeout and was stopped; "
                "lower max_tokens, add a stop sequence, or raise the timeout (--timeout SECONDS, timeout_s "
                "in a config).",
                model=self.model,
            )
        choice = out["choices"][0]
        reason = choice.get("finish_reason") or "other"
        return Generation(
            text=choice["message"].get("content") or "",
            finish_reason=reason if reason in ("stop", "length") else "other",
            prompt_tokens=prompt_tokens,
            completion_tokens=int(usage.get("completion_tokens", 0)),
            reused_prompt_tokens=reused,
        )

    @staticmethod
    def _chat(llama: Any, kwargs: dict[str, Any], stop_at_deadline) -> dict[str, Any]:
        from llama_cpp import LogitsProcessorList

        if kwargs["messages"][-1]["role"] == "assistant":
            return _continue_assistant(llama, kwargs, LogitsProcessorList([stop_at_deadline]))
        return llama.create_chat_completion(**kwargs, logits_processor=LogitsProcessorList([stop_at_deadline]))


def _evaluated_tokens(llama: Any) -> list[int]:
    """The tokens whose KV entries the context holds now (the last prompt and what was generated)."""
    return llama.input_ids.tolist()


def reused_prefix(before: list[int], after: list[int], prompt_tokens: int) -> int:
    """Prompt tokens a call took from the KV cache: the prefix its prompt (`after[:prompt_tokens]`) shares
    with what the context held before the call. llama.cpp evaluates at least the prompt's last token
    again (its logits are needed to sample), so a fully shared prompt reuses all but one token."""
    prompt = after[:prompt_tokens]
    n = 0
    for a, b in zip(before, prompt, strict=False):
        if a != b:
            break
        n += 1
    return min(n, max(prompt_tokens - 1, 0))


def _continue_assistant(llama: Any, kwargs: dict[str, Any], logits_processor: Any) -> dict[str, Any]:
    """A chat that ends with an assistant message asks for its continuation (pre-fill), as OPRO's
    "instruction at the start of the answer" needs. llama.cpp's chat handler would close that turn and
    open a new one, so the prompt is built here: the chat before it through the model's own template
    (ending in the opening of an assistant turn), then the pre-filled text. Only the continuation is
    returned. Sampling options are the chat handler's defaults, so both paths sample alike."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import LlamaGrammar

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("cannot continue an assistant message: the model file has no chat template")
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
    messages = kwargs["messages"]
    head = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)(messages=messages[:-1])
    prompt = llama.tokenize((head.prompt + messages[-1]["content"]).encode("utf-8"), add_bos=False, special=True)
    stop = [*(kwargs.get("stop") or []), *([head.stop] if isinstance(head.stop, str) else head.stop or [])]
    schema = kwargs.get("response_format", {}).get("schema") if kwargs.get("response_format") else None
    out = llama.create_completion(
        prompt=prompt,
        temperature=kwargs["temperature"],
        top_p=kwargs["top_p"],
        top_k=40,
        min_p=0.05,
        repeat_penalty=1.1,
        max_tokens=kwargs["max_tokens"],
        stop=stop,
        seed=kwargs["seed"],
        logits_processor=logits_processor,
        grammar=LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False) if schema else None,
    )
    choice = out["choices"][0]
    return {
        "choices": [{"message": {"content": choice["text"]}, "finish_reason": choice.get("finish_reason")}],
        "usage": out.get("usage") or {},
    }
