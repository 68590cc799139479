"""Text generation over the latent cache.

* :meth:`Generator.generate` — batched greedy / temperature / top-k / top-p sampling with stop tokens and stop
  strings; prompts of different lengths share one batch (each cache row keeps its own length).
* :meth:`Generator.stream` — the same, yielding tokens (and decoded text deltas) as they are produced.
* :meth:`Generator.generate_speculative` — MTP self-speculative greedy decoding: the MTP module drafts the token
  after next, the main model verifies it in the same step, so the output is exactly the greedy output and each
  accepted draft saves a step. Reports the acceptance rate.
* :meth:`Generator.prefill` — encode a long prompt (a document) once into a :class:`LatentCache` that later calls
  reuse (it can be saved with :meth:`LatentCache.save`).

On CUDA every decode step runs as a captured CUDA graph (one per batch size, step width and cache-length bucket):
absorbed MLA over the latent cache, grouped expert GEMMs and no host synchronisation inside the step, so a step
costs one graph launch instead of thousands of kernel launches from Python.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from lm.cache import LatentCache
from lm.mla import AttentionMeta, build_meta
from lm.model import LanguageModel

if TYPE_CHECKING:
    from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class GenerationError(ValueError):
    """Invalid generation arguments (empty prompt, bad sampling values, missing tokenizer, ...)."""


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop.

    Attributes:
        max_new_tokens: upper bound on generated tokens per row.
        temperature: 0 for greedy decoding, else the softmax temperature.
        top_k: keep only the k most likely tokens (0 = off).
        top_p: nucleus sampling mass (1 = off).
        stop_token_ids: tokens that end a row (None = the model's eos ids).
        stop_strings: texts that end a row (needs a tokenizer); the returned text stops before them.
        seed: seed for sampling (None = nondeterministic).
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    stop_token_ids: Sequence[int] | None = None
    stop_strings: Sequence[str] = ()
    seed: int | None = None

    def validate(self) -> None:
        """Raise :class:`GenerationError` for out-of-range values."""
        if self.max_new_tokens < 1:
            raise GenerationError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise GenerationError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise GenerationError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise GenerationError(f"top_k must be >= 0, got {self.top_k}")
        if any(not s for s in self.stop_strings):
            raise GenerationError("stop strings must be non-empty")


@dataclass
class GenerationResult:
    """Generated tokens per row (prompt excluded; a stop token is not included) and timing/speculation stats."""

    tokens: list[list[int]]
    texts: list[str] | None
    finish_reasons: list[str]
    prompt_tokens: list[int]
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    steps: int = 0
    drafted: int = 0
    accepted: int = 0

    @property
    def acceptance_rate(self) -> float | None:
        """Share of MTP drafts the main model confirmed (None without speculation)."""
        return self.accepted / self.drafted if self.drafted else None

    @property
    def decode_tokens_per_second(self) -> float:
        n = sum(len(t) for t in self.tokens)
        return n / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class StreamEvent:
    """One generated token of one row; ``text`` is the newly decodable text ('' without a tokenizer)."""

    row: int
    token: int
    text: str


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row from ``logits`` [B, V]; returns [B] long."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k:
        kth = logits.topk(min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > params.top_p  # keep the smallest prefix reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class _Readback:
    """Copies a small device tensor to the host without blocking the stream, so that the host can read the tokens
    of step k while step k+1, queued behind the copy, runs on the GPU (no idle GPU between decode steps)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.buffer: torch.Tensor | None = None
        self.event: torch.cuda.Event | None = None
        self.source: torch.Tensor | None = None

    def start(self, t: torch.Tensor) -> None:
        """Queue the copy of ``t`` (call before queueing the work that may overwrite ``t``)."""
        if not self.cuda:
            self.source = t
            return
        if self.buffer is None or self.buffer.shape != t.shape or self.buffer.dtype != t.dtype:
            self.buffer = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            self.event = torch.cuda.Event()
        assert self.event is not None
        self.buffer.copy_(t, non_blocking=True)  # the previous read finished before this call
        self.event.record()

    def finish(self) -> list[Any]:
        """Wait for the queued copy only (not for later work) and return its values."""
        if not self.cuda:
            assert self.source is not None
            return self.source.tolist()
        assert self.buffer is not None and self.event is not None
        self.event.synchronize()
        return self.buffer.tolist()


class _Graphs:
    """CUDA graphs of fixed-shape steps, keyed by shape; inputs are copied into static buffers before replay."""

    def __init__(self) -> None:
        self.entries: dict[Any, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}
        self.pool = torch.cuda.graph_pool_handle()

    def run(
        self, key: Any, body: Callable[..., tuple[torch.Tensor, ...]], inputs: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        entry = self.entries.get(key)
        if entry is None:
            static = tuple(t.clone() for t in inputs)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: library handles, workspaces (writes only unused cache slots)
                    body(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                outs = body(*static)
            entry = self.entries[key] = (graph, static, outs)
        graph, static, outs = entry
        for dst, src in zip(static, inputs, strict=True):
            dst.copy_(src)
        graph.replay()
        return outs


def _call_block(block: torch.nn.Module, *args: Any) -> torch.Tensor:
    return block(*args)


@functools.cache
def _compiled_block_fn(backend: str | Callable[..., Any], mode: str | None, exact_casts: bool) -> Callable[..., Any]:
    # One wrapper per setting, shared by all generators: Dynamo keeps compiled code per wrapper (its guards check
    # the backend), and entries beyond its recompile limit would silently run uncompiled.
    options = {"emulate_precision_casts": True} if exact_casts and backend == "inductor" else None
    return torch.compile(_call_block, backend=backend, mode=mode, options=options)


class CompiledBlocks:
    """Runs the decoder blocks of decode steps through ``torch.compile`` (TorchInductor).

    A decode step is a few dozen small kernels per layer (norms, RoPE, router scoring and group top-k, dispatch
    bookkeeping, SwiGLU, residual adds); Inductor fuses the elementwise and reduction ones and leaves the GEMMs to
    the vendor libraries. It runs without CUDA graphs of its own: the generator's graph captures the compiled
    kernels like any others. Parameters are graph inputs, so one compiled graph serves every block of a kind
    (dense or MoE). Should compilation fail, the plain blocks run from then on (same results, slower).

    Args:
        backend: ``torch.compile`` backend (``"inductor"``; tests use ``"aot_eager"`` to check tracing quickly).
        mode: ``torch.compile`` mode; must not be one that captures CUDA graphs itself.
        exact_casts: round fused intermediates to the model dtype where the plain code does (Inductor's
            ``emulate_precision_casts``); otherwise fused kernels keep them in float32.
    """

    def __init__(
        self, backend: str | Callable[..., Any] = "inductor", mode: str | None = None, exact_casts: bool = False
    ) -> None:
        if mode not in (None, "default", "max-autotune-no-cudagraphs"):
            raise GenerationError(f"compile mode {mode!r} captures its own CUDA graphs; use a *-no-cudagraphs mode")
        self.fn = _compiled_block_fn(backend, mode, exact_casts)
        self.usable = True

    def __call__(
        self,
        block: torch.nn.Module,
        x: torch.Tensor,
        rot: torch.Tensor,
        pairs: torch.Tensor,
        meta: AttentionMeta,
        kv_cache: torch.Tensor | None,
    ) -> torch.Tensor:
        if self.usable:
            try:
                return self.fn(block, x, rot, pairs, meta, kv_cache)
            except Exception as exc:  # a compiler/toolchain failure must not cost the answer
                if x.is_cuda and torch.cuda.is_current_stream_capturing():
                    raise
                log.warning("compiled decode blocks unusable (%s: %s); running them plain", type(exc).__name__, exc)
                self.usable = False
        return block(x, rot, pairs, meta, kv_cache)


class _Workspace:
    """Caches (main and MTP) plus the graphs captured against them, reused across calls of the same shape."""

    def __init__(self, model: LanguageModel, batch: int, capacity: int, mtp: bool, graphs: bool) -> None:
        cfg = model.config
        self.cache = LatentCache.for_model(cfg, batch, capacity, model.dtype, model.device)
        self.mtp_cache = (
            LatentCache.for_model(cfg, batch, capacity, model.dtype, model.device, mtp=True) if mtp else None
        )
        self.graphs = _Graphs() if graphs else None


class Generator:
    """Generation front end for a :class:`LanguageModel` (optionally with a tokenizer for text in/out).

    Args:
        model: the language model (put it on its device and dtype first).
        tokenizer: turns text prompts into ids and ids into text; needed for stop strings.
        use_cuda_graphs: capture decode steps as CUDA graphs (default: when the model is on CUDA).
        graph_bucket: cache-length granularity of captured graphs (each bucket is one capture).
        prefill_chunk: tokens per prefill forward (bounds activation memory on long prompts).
        compile_decode: run the decoder blocks of decode steps through ``torch.compile`` (see
            :class:`CompiledBlocks`); off by default. The first step of each new shape pays the compilation
            (about 11 s per shape for a V2-Lite-sized model on an H200).
    """

    def __init__(
        self,
        model: LanguageModel,
        tokenizer: Tokenizer | None = None,
        use_cuda_graphs: bool | None = None,
        graph_bucket: int = 256,
        prefill_chunk: int = 8192,
        compile_decode: bool = False,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.use_graphs = model.device.type == "cuda" if use_cuda_graphs is None else use_cuda_graphs
        if self.use_graphs and model.device.type != "cuda":
            raise GenerationError("CUDA graphs need the model on a CUDA device")
        self.graph_bucket = graph_bucket
        self.prefill_chunk = prefill_chunk
        # Queue decode step k+1 before reading step k's tokens (no idle GPU while the host reads them); it
        # buys nothing on the CPU, where every operation finishes before the next starts.
        self.overlap_steps = model.device.type == "cuda"
        self._workspaces: dict[tuple[int, int, bool], _Workspace] = {}
        # Eager-like rounding: as fast on the H200 and closer to the plain blocks (tests/benchmarks/results/lm_h200.md).
        self.blocks = CompiledBlocks(exact_casts=True) if compile_decode else None

    # ------------------------------------------------------------------ inputs
    def encode(self, prompt: str | Sequence[int], add_bos: bool = True) -> list[int]:
        """Token ids of a prompt (text needs the tokenizer); the BOS id is prepended to text prompts."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise GenerationError("text prompts need a tokenizer; pass token ids instead")
            ids = self.tokenizer.encode(prompt)
            bos = self.model.config.bos_token_id
            return ([bos] if add_bos and bos is not None else []) + ids
        ids = [int(t) for t in prompt]
        vocab = self.model.config.vocab_size
        if any(t < 0 or t >= vocab for t in ids):
            raise GenerationError(f"prompt token ids must be in [0, {vocab})")
        return ids

    def _stop_ids(self, params: SamplingParams) -> set[int]:
        if params.stop_token_ids is not None:
            return {int(t) for t in params.stop_token_ids}
        eos = self.model.config.eos_token_id
        return set() if eos is None else {eos} if isinstance(eos, int) else set(eos)

    def _workspace(self, batch: int, need: int, mtp: bool) -> _Workspace:
        capacity = -(-need // 1024) * 1024  # round up so later calls of similar size reuse buffers and graphs
        capacity = min(capacity, self.model.config.max_position_embeddings)
        if need > capacity:
            raise GenerationError(f"{need} tokens exceed the model's {capacity} positions")
        key = (batch, capacity, mtp)
        if key not in self._workspaces:
            if len(self._workspaces) >= 2:  # caches can be large: keep the two most recent shapes
                del self._workspaces[next(iter(self._workspaces))]
            self._workspaces[key] = _Workspace(self.model, batch, capacity, mtp, self.use_graphs)
        return self._workspaces[key]

    # ------------------------------------------------------------------ prefill
    @torch.inference_mode()
    def prefill(self, prompt: str | Sequence[int], capacity: int | None = None) -> LatentCache:
        """Encode one prompt (e.g. a whole document) into a fresh 1-row cache for later reuse."""
        ids = self.encode(prompt)
        if not ids:
            raise GenerationError("cannot prefill an empty prompt")
        cache = LatentCache.for_model(self.model.config, 1, capacity or len(ids), self.model.dtype, self.model.device)
        self._prefill(cache, [ids])
        return cache

    def _prefill(
        self, cache: LatentCache, prompts: list[list[int]], keep_hidden: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Append right-padded prompts to ``cache``; returns last-token logits [B, V] (and all hidden [B, S, D])."""
        model, device = self.model, self.model.device
        lens = [len(p) for p in prompts]
        width = max(lens)
        pad = model.config.pad_token_id or 0
        ids = torch.tensor([p + [pad] * (width - len(p)) for p in prompts], device=device)
        start = cache.host_lengths
        last_hidden = torch.empty(len(prompts), model.config.hidden_size, dtype=model.dtype, device=device)
        hidden_parts = []
        for c0 in range(0, width, self.prefill_chunk):
            chunk = ids[:, c0 : c0 + self.prefill_chunk]
            out = model(chunk, cache=cache, logits_to_keep=1)
            for b, n in enumerate(lens):
                if c0 <= n - 1 < c0 + chunk.shape[1]:
                    last_hidden[b] = out.hidden[b, n - 1 - c0]
            if keep_hidden:
                hidden_parts.append(out.hidden)
        cache.set_lengths([s + n for s, n in zip(start, lens, strict=True)])
        return model.lm_head(last_hidden), torch.cat(hidden_parts, 1) if keep_hidden else None

    # ------------------------------------------------------------------ decode steps
    def _step_body(self, ws: _Workspace, kind: str, kv_len: int) -> Callable[..., tuple[torch.Tensor, ...]]:
        model = self.model

        def main(ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
            # ids [B, n] -> logits [B, n, V], hidden [B, n, D]; attends over the first kv_len cache slots
            meta = build_meta(ws.cache.lengths, ids.shape[1], kv_len, 1, True, ids.device)
            meta.materialise(model.config.num_attention_heads, model.dtype)
            hidden = model.run_layers(model.embed(ids), meta.write_index, meta, ws.cache.layers(), self.blocks)
            return model.lm_head(hidden), hidden

        def mtp(ids: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
            assert ws.mtp_cache is not None
            meta = build_meta(ws.mtp_cache.lengths, ids.shape[1], kv_len, 1, True, ids.device)
            return model.mtp_forward(0, hidden, ids, meta.write_index, meta, ws.mtp_cache.layers()[0])[::-1]

        return main if kind == "main" else mtp

    def _step(self, ws: _Workspace, kind: str, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One cached step of ``n`` tokens (absorbed attention); advances the cache. Returns (logits, hidden)."""
        cache = ws.cache if kind == "main" else ws.mtp_cache
        assert cache is not None
        n = inputs[0].shape[1]
        need = max(cache.host_lengths) + n
        if need > cache.capacity:
            raise GenerationError(f"generation needs {need} cache slots, the workspace has {cache.capacity}")
        outs = None
        if ws.graphs is not None:
            kv_len = min(-(-need // self.graph_bucket) * self.graph_bucket, cache.capacity)
            try:
                outs = ws.graphs.run((kind, n, kv_len), self._step_body(ws, kind, kv_len), inputs)
            except RuntimeError as exc:  # e.g. an op that synchronises: decode eagerly instead of failing
                log.warning("CUDA graph capture failed (%s); decoding without graphs", exc)
                self._drop_graphs()
        if outs is None:
            outs = self._step_body(ws, kind, need)(*inputs)
        cache.advance(n)
        return outs

    def _spec_body(self, ws: _Workspace, kv_len: int) -> Callable[..., tuple[torch.Tensor, ...]]:
        model = self.model
        assert ws.mtp_cache is not None
        main_layers, mtp_layer = ws.cache.layers(), ws.mtp_cache.layers()[0]

        def step(spec: torch.Tensor) -> tuple[torch.Tensor, ...]:
            # spec [3] long: (token t at position L, draft d for L+1, L = cached length of both caches).
            token, draft, start = spec[0:1], spec[1:2], spec[2:3]
            ids = torch.stack((token, draft), dim=1)  # [1, 2]
            meta = build_meta(start, 2, kv_len, 1, True, ids.device)
            meta.materialise(model.config.num_attention_heads, model.dtype)
            hidden = model.run_layers(model.embed(ids), meta.write_index, meta, main_layers, self.blocks)
            pred = model.lm_head(hidden).argmax(-1)  # [1, 2]: true token at L+1, and at L+2 if d was right
            ok = pred[:, 0] == draft  # [1]
            # Draft from both verified slots (the MTP cache has the main cache's length, so the same metadata
            # serves); when d was wrong only slot L is real: slot L never attends to slot L+1, which the next
            # step overwrites, so slot L's draft is taken.
            _, mtp_logits = model.mtp_forward(0, hidden, pred, meta.write_index, meta, mtp_layer)
            drafts = mtp_logits.argmax(-1)  # [1, 2]
            new_token = torch.where(ok, pred[:, 1], pred[:, 0])
            new_draft = torch.where(ok, drafts[:, 1], drafts[:, 0])
            return (torch.cat((new_token, new_draft, start + 1 + ok.long())),)

        return step

    def _spec_step(self, ws: _Workspace, spec: torch.Tensor, need: int) -> torch.Tensor:
        """One speculative step (verify two tokens, draft the next) as a single graph; returns the next state.

        ``need`` bounds the cache slots the step touches (its length + 2); the generation budget keeps the true
        value within the workspace even where the bound, taken before the length is known, exceeds it.
        """
        need = min(need, ws.cache.capacity)
        if ws.graphs is not None:
            kv_len = min(-(-need // self.graph_bucket) * self.graph_bucket, ws.cache.capacity)
            try:
                return ws.graphs.run(("spec", kv_len), self._spec_body(ws, kv_len), (spec,))[0]
            except RuntimeError as exc:
                log.warning("CUDA graph capture failed (%s); decoding without graphs", exc)
                self._drop_graphs()
        return self._spec_body(ws, need)(spec)[0]

    def _drop_graphs(self) -> None:
        self.use_graphs = False
        for w in self._workspaces.values():
            w.graphs = None

    # ------------------------------------------------------------------ public API
    def generate(
        self,
        prompts: str | Sequence[int] | Sequence[str | Sequence[int]],
        params: SamplingParams | None = None,
        cache: LatentCache | None = None,
        **overrides: Any,
    ) -> GenerationResult:
        """Generate for one prompt or a batch of prompts.

        Args:
            prompts: text (needs the tokenizer), a list of ids, or a list of either.
            params: sampling parameters; keyword ``overrides`` replace individual fields.
            cache: a prefilled cache (e.g. of a document) every prompt continues from; it is not modified.
        """
        events = self._run(prompts, params, cache, overrides)
        for _ in events:
            pass
        return events.result  # type: ignore[attr-defined]

    def stream(
        self,
        prompts: str | Sequence[int] | Sequence[str | Sequence[int]],
        params: SamplingParams | None = None,
        cache: LatentCache | None = None,
        **overrides: Any,
    ) -> Iterator[StreamEvent]:
        """Like :meth:`generate` but yields each token as it is produced."""
        yield from self._run(prompts, params, cache, overrides)

    def _normalise(self, prompts: Any) -> list[list[int]]:
        if isinstance(prompts, str) or (isinstance(prompts, Sequence) and prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        if isinstance(prompts, torch.Tensor):
            prompts = prompts.tolist()
        batch = [self.encode(p) for p in prompts]
        if not batch or any(len(p) == 0 for p in batch):
            raise GenerationError("every prompt needs at least one token")
        return batch

    def _run(
        self, prompts: Any, params: SamplingParams | None, cache: LatentCache | None, overrides: dict[str, Any]
    ) -> _EventStream:
        params = SamplingParams(**{**(params.__dict__ if params else {}), **overrides})
        params.validate()
        if params.stop_strings and self.tokenizer is None:
            raise GenerationError("stop strings need a tokenizer")
        batch = self._normalise(prompts)
        return _EventStream(self, batch, params, cache)

    @torch.inference_mode()
    def generate_speculative(
        self, prompt: str | Sequence[int], params: SamplingParams | None = None, **overrides: Any
    ) -> GenerationResult:
        """Greedy decoding of one prompt with MTP self-speculation; output identical to greedy ``generate``."""
        params = SamplingParams(**{**(params.__dict__ if params else {}), **overrides})
        params.validate()
        if params.temperature != 0:
            raise GenerationError("speculative decoding is greedy only (temperature must be 0)")
        if not self.model.mtp:
            raise GenerationError("the model has no MTP module to draft with")
        if params.stop_strings and self.tokenizer is None:
            raise GenerationError("stop strings need a tokenizer")
        (ids,) = self._normalise([prompt])
        model = self.model
        t0 = time.perf_counter()
        ws = self._workspace(1, len(ids) + params.max_new_tokens + 2, mtp=True)
        assert ws.mtp_cache is not None
        ws.cache.set_lengths([0])
        ws.mtp_cache.set_lengths([0])
        logits, hidden = self._prefill(ws.cache, [ids], keep_hidden=True)
        assert hidden is not None
        token = logits.argmax(-1)  # [1]
        # MTP prefill: slot i sees the main hidden state at i and the embedding of token i+1.
        next_ids = torch.cat((torch.tensor([ids[1:]], device=model.device), token[None]), dim=1)
        meta_pos, meta = ws.mtp_cache.prepare(next_ids.shape[1])
        _, mtp_logits = model.mtp_forward(0, hidden, next_ids, meta_pos, meta, ws.mtp_cache.layers()[0])
        ws.mtp_cache.advance(next_ids.shape[1])
        # Decode state on the device: (last token, its draft successor, cached length of both caches).
        spec = torch.stack((token[0], mtp_logits[0, -1].argmax(-1), torch.tensor(len(ids), device=model.device)))
        first, draft, length = spec.tolist()
        t1 = time.perf_counter()
        state = _RowState(self, params)
        state.push(first)
        drafted = accepted = steps = 0
        readback = _Readback(model.device)
        ahead = self.overlap_steps
        queued = None  # the next step's state, already queued on the GPU
        while not state.done:
            spec = queued if queued is not None else self._spec_step(ws, spec, length + 2)
            readback.start(spec)
            # Queue the step after this one unless this one surely finishes the text (it yields 1 or 2 tokens);
            # its cache length is not known yet, so it attends over a window sized for the longest case.
            queued = None
            if ahead and len(state.tokens) + 1 < params.max_new_tokens:
                queued = self._spec_step(ws, spec, length + 4)
            token, new_draft, new_length = readback.finish()
            drafted += 1
            steps += 1
            if new_length - length == 2:  # draft confirmed: it and the token after it are both final
                accepted += 1
                state.push(draft)
                if not state.done:
                    state.push(token)
            else:
                state.push(token)
            draft, length = new_draft, new_length
        ws.cache.set_lengths([length])
        ws.mtp_cache.set_lengths([length])
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        return GenerationResult(
            tokens=[state.tokens],
            texts=[state.text] if self.tokenizer else None,
            finish_reasons=[state.reason],
            prompt_tokens=[len(ids)],
            prefill_seconds=t1 - t0,
            decode_seconds=t2 - t1,
            steps=steps,
            drafted=drafted,
            accepted=accepted,
        )

    def _load_prefix(self, ws: _Workspace, cache: LatentCache | None, batch: int) -> None:
        """Reset the workspace cache to empty, or to a copy of ``cache`` broadcast over the batch."""
        if cache is None:
            ws.cache.set_lengths([0] * batch)
            return
        if cache.fingerprint and cache.fingerprint != ws.cache.fingerprint:
            raise GenerationError("the prefilled cache was made by a different model architecture")
        if cache.batch_size not in (1, batch):
            raise GenerationError(f"a prefilled cache of {cache.batch_size} rows cannot serve {batch} prompts")
        n = max(cache.host_lengths)
        ws.cache.data[:, :, :n] = cache.data[:, :, :n].to(ws.cache.data.device).expand(-1, batch, -1, -1)
        lengths = cache.host_lengths * batch if cache.batch_size == 1 else cache.host_lengths
        ws.cache.set_lengths(lengths)


class _RowState:
    """Tokens, text and stop state of one generated row."""

    def __init__(self, gen: Generator, params: SamplingParams) -> None:
        self.tokenizer = gen.tokenizer
        self.params = params
        self.stop_ids = gen._stop_ids(params)
        self.tokens: list[int] = []
        self.text = ""
        self._emitted = 0  # characters of text already streamed
        self.done = False
        self.reason = ""

    def push(self, token: int) -> str | None:
        """Record a generated token; returns the text that became final, or None if the token was not kept."""
        if self.done:
            return None
        if token in self.stop_ids:
            self.done, self.reason = True, "stop_token"
            self._delta()  # what was held back is final now
            return None
        self.tokens.append(token)
        if self.tokenizer is not None:
            self.text = self.tokenizer.decode(self.tokens)
            for s in self.params.stop_strings:
                cut = self.text.find(s)
                if cut >= 0:
                    self.text = self.text[:cut]
                    self.done, self.reason = True, "stop_string"
        if not self.done and len(self.tokens) >= self.params.max_new_tokens:
            self.done, self.reason = True, "length"
        return self._delta()

    def _delta(self) -> str:
        safe = len(self.text)
        if not self.done:
            # Hold back an incomplete UTF-8 character and any tail that could start a stop string.
            safe = len(self.text.rstrip("\ufffd"))
            head = self.text[:safe]
            hold = [k for s in self.params.stop_strings for k in range(1, len(s)) if head.endswith(s[:k])]
            safe -= max(hold, default=0)
        delta = self.text[self._emitted : safe] if safe > self._emitted else ""
        self._emitted = max(self._emitted, safe)
        return delta


class _EventStream:
    """Iterator over :class:`StreamEvent`; the final :class:`GenerationResult` is in ``result`` when exhausted."""

    def __init__(self, gen: Generator, batch: list[list[int]], params: SamplingParams, cache: LatentCache | None):
        self.gen, self.batch, self.params, self.cache = gen, batch, params, cache
        self.result: GenerationResult | None = None
        self._it = self._events()

    def __iter__(self) -> _EventStream:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._it)

    def _decode_step(self, ws: _Workspace, token: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        logits, _ = self.gen._step(ws, "main", token[:, None])
        return sample(logits[:, -1], self.params, generator)

    @torch.inference_mode()
    def _events(self) -> Iterator[StreamEvent]:
        gen, batch, params = self.gen, self.batch, self.params
        model = gen.model
        bsz = len(batch)
        past = max(self.cache.host_lengths) if self.cache is not None else 0
        t0 = time.perf_counter()
        ws = gen._workspace(bsz, past + max(map(len, batch)) + params.max_new_tokens, mtp=False)
        gen._load_prefix(ws, self.cache, bsz)
        logits, _ = gen._prefill(ws.cache, batch)
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=model.device).manual_seed(params.seed)
        rows = [_RowState(gen, params) for _ in range(bsz)]
        token = sample(logits, params, generator)
        t1 = time.perf_counter()
        steps = 0
        readback = _Readback(model.device)
        ahead = gen.overlap_steps
        while True:
            readback.start(token)
            # Queue the next step unless every row ends with this token by length; a row that stops on a stop
            # token or string makes the queued step surplus (its cache slots are never read).
            nxt = None
            if ahead and any(not r.done and len(r.tokens) + 1 < params.max_new_tokens for r in rows):
                nxt = self._decode_step(ws, token, generator)
                steps += 1
            for b, t in enumerate(readback.finish()):
                text = rows[b].push(t)
                if text is not None:
                    yield StreamEvent(b, t, text)
            if all(r.done for r in rows):
                break
            if nxt is None:
                nxt = self._decode_step(ws, token, generator)
                steps += 1
            token = nxt
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        self.result = GenerationResult(
            tokens=[r.tokens for r in rows],
            texts=[r.text for r in rows] if gen.tokenizer else None,
            finish_reasons=[r.reason for r in rows],
            prompt_tokens=[len(p) for p in batch],
            prefill_seconds=t1 - t0,
            decode_seconds=t2 - t1,
            steps=steps,
        )


__all__ = ["GenerationError", "GenerationResult", "Generator", "SamplingParams", "StreamEvent", "sample"]
