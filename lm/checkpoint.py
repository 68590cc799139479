"""Load and save the Hugging Face ``DeepseekV3ForCausalLM`` checkpoint layout.

On disk (what ``transformers`` writes and what DeepSeek released):

* ``config.json``; weights in ``model.safetensors`` or shards ``model-0000i-of-0000n.safetensors`` plus
  ``model.safetensors.index.json`` (``weight_map``: tensor name -> shard file);
* names ``model.embed_tokens.weight``, ``model.layers.{i}.self_attn.*``, ``model.layers.{i}.mlp.gate.weight``,
  ``model.layers.{i}.mlp.gate.e_score_correction_bias``, per-expert ``model.layers.{i}.mlp.experts.{e}.
  {gate,up,down}_proj.weight``, ``model.layers.{i}.mlp.shared_experts.*``, ``model.norm.weight``,
  ``lm_head.weight``;
* MTP module ``k`` at layer index ``num_hidden_layers + k``: ``enorm``, ``hnorm``, ``eh_proj``,
  ``shared_head.norm`` and a full decoder block (``self_attn``, ``mlp``, norms). DeepSeek's files also repeat the
  shared ``embed_tokens`` / ``shared_head.head`` there; they are ignored on load and written only on request.

The name mapping lives here, outside the model classes. Only safetensors are read: pickle-based files
(``.bin``, ``.pt``, ``.pth``, ``.ckpt``) are refused because loading them can run arbitrary code.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lm.config import LMConfig
from lm.model import LanguageModel

log = logging.getLogger(__name__)

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_EXPERT = re.compile(r"^mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_MTP_OWN = ("enorm.weight", "hnorm.weight", "eh_proj.weight")
_MTP_SHARED_COPIES = ("embed_tokens.weight", "shared_head.head.weight")


class CheckpointError(ValueError):
    """A checkpoint folder or file cannot be loaded (missing, pickled, incomplete, mismatched)."""


# ---------------------------------------------------------------------- name mapping
def hf_tensors(
    model: LanguageModel, include_mtp_shared: bool = False
) -> Iterator[tuple[str, Callable[[], torch.Tensor], int]]:
    """Yield (checkpoint name, tensor factory, byte size) for every tensor of ``model`` in checkpoint layout.

    Factories produce fresh contiguous tensors lazily so shards can be written without copying the whole model.
    """
    config = model.config
    n_layers = config.num_hidden_layers
    inter = config.moe_intermediate_size
    state = model.state_dict()

    def plain(t: torch.Tensor) -> Callable[[], torch.Tensor]:
        return lambda: t.detach().contiguous()

    for name, t in state.items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if name.startswith("mtp."):
            _, k, rest = name.split(".", 2)
            prefix = f"model.layers.{n_layers + int(k)}."
            if rest == "norm.weight":
                rest = "shared_head.norm.weight"
            elif rest.startswith("block."):
                rest = rest[len("block.") :]
        elif name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            prefix = f"model.layers.{i}."
        elif name == "lm_head.weight":
            prefix, rest = "", name
        else:
            prefix, rest = "model.", name
        if rest.endswith("mlp.experts.gate_up_proj"):
            base = prefix + rest[: -len("gate_up_proj")]
            for e in range(t.shape[0]):
                gate, up = t[e, :inter], t[e, inter:]
                yield f"{base}{e}.gate_proj.weight", (lambda x=gate: x.detach().clone()), gate.nbytes
                yield f"{base}{e}.up_proj.weight", (lambda x=up: x.detach().clone()), up.nbytes
        elif rest.endswith("mlp.experts.down_proj"):
            base = prefix + rest[: -len("down_proj")]
            for e in range(t.shape[0]):
                yield f"{base}{e}.down_proj.weight", (lambda t=t, e=e: t[e].detach().clone()), t[e].nbytes
        else:
            yield prefix + rest, plain(t), t.nbytes
    if include_mtp_shared:
        for k in range(config.num_nextn_predict_layers):
            prefix = f"model.layers.{n_layers + k}."
            emb, head = model.embed_tokens.weight, model.lm_head.weight
            yield prefix + "embed_tokens.weight", (lambda x=emb: x.detach().clone()), emb.nbytes
            yield prefix + "shared_head.head.weight", (lambda x=head: x.detach().clone()), head.nbytes


def hf_to_internal(name: str, config: LMConfig) -> tuple[str, tuple[int, slice | None] | None] | None:
    """Map a checkpoint tensor name to (internal parameter name, (expert, row slice) or None).

    Returns None for tensors that are deliberately ignored (shared MTP copies, rotary caches, extra MTP layers).
    Raises :class:`CheckpointError` for names that do not belong to this architecture.
    """
    if name == "lm_head.weight":
        return name, None
    if name in ("model.embed_tokens.weight", "model.norm.weight"):
        return name[len("model.") :], None
    if name.endswith(("rotary_emb.inv_freq", "rotary_emb.original_inv_freq")):
        return None
    if name.endswith(("weight_scale_inv", ".scale", "_scale")):
        raise CheckpointError(f"checkpoint: {name} is a quantisation scale; FP8 checkpoints must be dequantised")
    m = _LAYER.match(name)
    if m is None:
        raise CheckpointError(f"checkpoint: unexpected tensor {name}")
    idx, rest = int(m.group(1)), m.group(2)
    n_layers = config.num_hidden_layers
    if idx < n_layers:
        prefix = f"layers.{idx}."
    else:
        k = idx - n_layers
        if k >= config.num_nextn_predict_layers:
            return None
        if rest in _MTP_SHARED_COPIES:
            return None
        if rest in _MTP_OWN:
            return f"mtp.{k}.{rest}", None
        if rest == "shared_head.norm.weight":
            return f"mtp.{k}.norm.weight", None
        prefix = f"mtp.{k}.block."
    e = _EXPERT.match(rest)
    if e is None:
        return prefix + rest, None
    expert, kind = int(e.group(1)), e.group(2)
    inter = config.moe_intermediate_size
    if kind == "down":
        return prefix + "mlp.experts.down_proj", (expert, None)
    rows = slice(0, inter) if kind == "gate" else slice(inter, 2 * inter)
    return prefix + "mlp.experts.gate_up_proj", (expert, rows)


# ---------------------------------------------------------------------- save
def save_pretrained(
    model: LanguageModel,
    out_dir: str | Path,
    max_shard_bytes: int = 2 * 1024**3,
    dtype: torch.dtype | None = None,
    include_mtp_shared: bool = False,
) -> list[Path]:
    """Write ``config.json``, ``generation_config.json`` and safetensors weights (sharded with an index if large).

    Args:
        model: the model to save.
        out_dir: destination folder (created).
        max_shard_bytes: shard size limit; one ``model.safetensors`` when everything fits.
        dtype: cast floating tensors (the router and correction bias always stay float32).
        include_mtp_shared: also write DeepSeek's duplicated embedding/head under the MTP layer.

    Returns:
        The weight files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = list(hf_tensors(model, include_mtp_shared))

    def size(name: str, nbytes: int) -> int:
        # Bytes after the optional cast (float32 router tensors are never cast).
        if dtype is None or name.endswith(("mlp.gate.weight", "e_score_correction_bias")):
            return nbytes
        return nbytes * dtype.itemsize // model.dtype.itemsize

    shards: list[list[tuple[str, Callable[[], torch.Tensor]]]] = [[]]
    used = 0
    for name, make, nbytes in entries:
        n = size(name, nbytes)
        if shards[-1] and used + n > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append((name, make))
        used += n
    for stale in list(out.glob("model*.safetensors")) + [out / INDEX_NAME]:
        if stale.exists():
            stale.unlink()
    files: list[Path] = []
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards, start=1):
        fname = SINGLE_NAME if len(shards) == 1 else f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        tensors: dict[str, torch.Tensor] = {}
        for name, make in shard:
            t = make().cpu()
            keep32 = name.endswith(("mlp.gate.weight", "e_score_correction_bias"))
            if dtype is not None and t.is_floating_point() and not keep32:
                t = t.to(dtype)
            tensors[name] = t
            weight_map[name] = fname
            total += t.nbytes
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        files.append(out / fname)
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    dtype_name = {v: k for k, v in _DTYPES.items()}.get(dtype or model.dtype, "float32")
    model.config.replace(torch_dtype=dtype_name).save(out)
    gen = {"bos_token_id": model.config.bos_token_id, "eos_token_id": model.config.eos_token_id}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")
    return files


# ---------------------------------------------------------------------- load
def weight_files(path: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint folder (refusing pickle-only checkpoints)."""
    path = Path(path)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(f"checkpoint: refusing pickle-based file {path.name}; convert it to safetensors")
        if path.suffix != ".safetensors":
            raise CheckpointError(f"checkpoint: {path} is not a safetensors file")
        return [path]
    if not path.is_dir():
        raise CheckpointError(f"checkpoint: {path} does not exist")
    index = path / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"checkpoint: unreadable index {index}: {exc}") from exc
        files = [path / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"checkpoint: shard(s) listed in the index are missing: {', '.join(missing)}")
        return files
    if (path / SINGLE_NAME).is_file():
        return [path / SINGLE_NAME]
    found = sorted(path.glob("*.safetensors"))
    if found:
        return found
    if any(p.suffix in PICKLE_SUFFIXES for p in path.iterdir()):
        raise CheckpointError(f"checkpoint: {path} holds only pickle-based weights; convert them to safetensors")
    raise CheckpointError(f"checkpoint: no safetensors weights in {path}")


def _open(path: Path):  # type: ignore[no-untyped-def]
    """``safe_open`` that reports unreadable files as :class:`CheckpointError`."""
    try:
        return safe_open(str(path), framework="pt")
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"checkpoint: cannot read {path.name}: {exc}") from exc


def _checkpoint_names(files: list[Path]) -> list[str]:
    names: list[str] = []
    for f in files:
        with _open(f) as fh:
            names.extend(fh.keys())
    return names


def load_weights(model: LanguageModel, files: list[Path], strict: bool = True) -> list[str]:
    """Copy checkpoint tensors into ``model`` (casting to each parameter's dtype); returns ignored names.

    Raises:
        CheckpointError: on shape mismatches, or (``strict``) when model tensors stay unfilled.
    """
    config = model.config
    targets = dict(model.named_parameters())
    targets.update(dict(model.named_buffers()))
    filled: dict[str, int] = {}
    ignored: list[str] = []
    with torch.no_grad():
        for f in files:
            with _open(f) as fh:
                for name in fh.keys():
                    mapped = hf_to_internal(name, config)
                    if mapped is None:
                        ignored.append(name)
                        continue
                    target_name, part = mapped
                    if target_name not in targets:
                        raise CheckpointError(f"checkpoint: {name} has no counterpart in this model")
                    target = targets[target_name]
                    dst = target if part is None else target[part[0]] if part[1] is None else target[part[0], part[1]]
                    src = fh.get_tensor(name)
                    if tuple(src.shape) != tuple(dst.shape):
                        raise CheckpointError(
                            f"checkpoint: {name} has shape {tuple(src.shape)}, the model expects {tuple(dst.shape)}"
                        )
                    dst.copy_(src.to(dst.dtype))
                    filled[target_name] = filled.get(target_name, 0) + dst.numel()
    if strict:
        skip = {"lm_head.weight"} if config.tie_word_embeddings else set()
        persistent = {n for n in model.state_dict()} - skip
        missing = sorted(n for n in persistent if filled.get(n, 0) != targets[n].numel())
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise CheckpointError(f"checkpoint: {len(missing)} model tensor(s) missing or incomplete: {shown}")
    return ignored


def load_pretrained(
    path: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    strict: bool = True,
) -> LanguageModel:
    """Build a :class:`LanguageModel` from a Hugging Face-layout folder.

    Args:
        path: folder with ``config.json`` and safetensors weights.
        device: where to build the model.
        dtype: parameter dtype (default: the config's ``torch_dtype``); the router stays float32.
        strict: fail when any model tensor is missing from the checkpoint.

    A config announcing MTP modules whose weights the checkpoint lacks (``transformers`` saves none) gives a model
    without MTP modules rather than random ones.
    """
    path = Path(path)
    files = weight_files(path)
    config = LMConfig.load(path if path.is_dir() else path.parent)
    names = _checkpoint_names(files)
    mtp_prefix = f"model.layers.{config.num_hidden_layers}."
    if config.num_nextn_predict_layers and not any(n.startswith(mtp_prefix) for n in names):
        log.info("checkpoint %s has no MTP weights; loading without MTP modules", path)
        config = config.replace(num_nextn_predict_layers=0)
    with torch.device(device):
        model = LanguageModel(config, init=False)
    model.to(dtype or _DTYPES[config.torch_dtype])
    load_weights(model, files, strict)
    return model.eval()
