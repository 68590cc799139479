"""What the Triton kernels of the backbone share: the optional import and the run-checked-then-trust wrapper.

Each hand-written kernel (fused MoE dispatch, routing, MLA decode attention) is compared with the plain PyTorch path
on its first call outside CUDA graph capture; should it fail or disagree, the plain path serves from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch

log = logging.getLogger(__name__)

try:  # Triton ships with PyTorch's CUDA builds; without it (CPU) every kernel's plain path runs
    import triton
    import triton.language as tl
except ImportError:
    triton = None
    tl = None

T = TypeVar("T")


def max_diff_check(out: torch.Tensor, expected: torch.Tensor) -> str | None:
    """None when ``out`` is within bf16 rounding of the float32 ``expected``, else the disagreement."""
    err = (out.float() - expected.float()).abs().max().item()
    if err > 2e-2 * expected.abs().max().item() + 1e-3:  # a wrong row (misrouted, wrong slot) is off by ~100 %
        return f"max abs diff {err:.3g}"
    return None


def run_checked(
    state: dict[str, bool],
    checked: str,
    capturing: bool,
    kernel: Callable[[], T],
    plain: Callable[[], T],
    check: Callable[[T], str | None],
    name: str,
) -> T:
    """``kernel()`` while ``state["usable"]``, compared on its first call (``state[checked]`` unset, never under
    graph capture) by ``check`` (None when it agrees with the plain path); ``plain()`` otherwise and from a failure or
    disagreement on. Under capture a failure is raised: the plain path cannot replace work already captured."""
    if state["usable"] and (state[checked] or not capturing):
        try:
            out = kernel()
            if not state[checked]:
                state[checked] = True
                problem = check(out)
                if problem is not None:
                    raise RuntimeError(f"{name} disagree with the plain path ({problem})")
            return out
        except Exception as exc:  # a Triton/driver mismatch: keep correct results on the plain path
            if capturing:
                raise
            log.warning("%s unusable (%s); using the plain path", name, exc)
            state["usable"] = False
    return plain()
