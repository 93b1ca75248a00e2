"""A PEFT LoRA adapter as a GGUF LoRA file that llama.cpp applies at run time over a base GGUF.

    from converter.lora_gguf import write_lora_gguf
    write_lora_gguf(Path("runs/my-adapter"), Path("models/base-hf"), Path("out/my-lora-F16.gguf"))
    Llama(model_path="out/base-F16.gguf", lora_path="out/my-lora-F16.gguf")   # llama-cpp-python

Tensor names and layouts come from llama.cpp's own converter (the model class of the base
architecture), so that a LoRA pair lands on exactly the tensor the base GGUF has. Some model
classes rearrange weights on the way (Llama permutes the rows of q and k for its rope, Falcon
regroups its fused q/k/v rows); the adapter's B @ A is carried through those same steps by
`LoraPair`, which applies every row operation to B and keeps A as it is.

What llama.cpp's LoRA format cannot carry is refused with a message: DoRA, modules_to_save
(whole trained copies of a layer), LoRA on the embeddings, and any other tensor that is not a
lora_A/lora_B pair. rsLoRA and per-module alphas are folded into B, because a GGUF adapter has
one alpha and llama.cpp scales each pair by alpha / rank.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

OUTTYPES = ("f16", "f32")


class LoraGGUFError(ValueError):
    """The adapter cannot be a llama.cpp LoRA GGUF; the message says why and what to do."""


class LoraPair:
    """The product B @ A of one LoRA pair, shaped like the weight it updates, never multiplied out.

    A is (rank, in_features) and stays so; B is (..., rank). Model classes reshape, permute,
    slice and concatenate weights along their rows; those operations act on the rows of B @ A,
    which are the rows of B, so they are applied to B alone. An operation on the columns
    (in_features) would need A changed instead; the few that do are handled, the rest raise.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if a.dim() != 2 or b.shape[-1] != a.shape[0]:
            raise ValueError(f"not a LoRA pair: A {tuple(a.shape)}, B {tuple(b.shape)}")
        dtype = torch.promote_types(a.dtype, b.dtype)
        self.a, self.b = a.to(dtype), b.to(dtype)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((*self.b.shape[:-1], self.a.shape[1]))

    @property
    def dtype(self) -> torch.dtype:
        return self.a.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return self.ndim

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return math.prod(self.shape)

    def to(self, *args: Any, **kwargs: Any) -> LoraPair:
        return LoraPair(self.a.to(*args, **kwargs), self.b.to(*args, **kwargs))

    def float(self) -> LoraPair:
        return self.to(torch.float32)

    def contiguous(self) -> LoraPair:
        return LoraPair(self.a.contiguous(), self.b.contiguous())

    def reshape(self, *shape: int | Sequence[int]) -> LoraPair:
        dims = list(shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
        if -1 in dims:
            known = math.prod(d for d in dims if d != -1)
            dims[dims.index(-1)] = self.numel() // known
        if len(dims) < 2 or dims[-1] != self.shape[-1]:
            raise NotImplementedError(f"LoRA reshape {tuple(self.shape)} -> {tuple(dims)}")
        return LoraPair(self.a, self.b.reshape(*dims[:-1], self.b.shape[-1]))

    view = reshape

    def reshape_as(self, other: Any) -> LoraPair:
        return self.reshape(tuple(other.shape))

    def permute(self, *dims: int | Sequence[int]) -> LoraPair:
        order = [d % self.ndim for d in (dims[0] if len(dims) == 1 else dims)]  # type: ignore[union-attr]
        last = self.ndim - 1
        if order[-1] == last:  # the columns stay where they are: rearrange B's rows
            return LoraPair(self.a, self.b.permute(*order[:-1], last))
        if self.ndim == 2:  # (B @ A).T = A.T @ B.T
            return LoraPair(self.b.T, self.a.T)
        raise NotImplementedError(f"LoRA permute {order} of a {self.ndim}-d tensor")

    def transpose(self, dim0: int, dim1: int) -> LoraPair:
        order = list(range(self.ndim))
        order[dim0], order[dim1] = order[dim1], order[dim0]
        return self.permute(*order)

    swapaxes = transpose

    def __getitem__(self, index: Any) -> LoraPair:
        index = index if isinstance(index, tuple) else (index,)
        if any(i is Ellipsis or i is None for i in index):
            raise NotImplementedError("LoRA indexing with ... or None")
        if len(index) < self.ndim:
            return LoraPair(self.a, self.b[(*index, slice(None))])
        # The last index picks columns, which are A's columns.
        return LoraPair(self.a[:, index[-1]], self.b[(*index[:-1], slice(None))])

    def split(self, size: int | Sequence[int], dim: int = 0) -> tuple[LoraPair, ...]:
        if dim % self.ndim == self.ndim - 1:
            return tuple(LoraPair(a, self.b) for a in self.a.split(size, dim=1))
        return tuple(LoraPair(self.a, b) for b in self.b.split(size, dim=dim))

    @classmethod
    def cat(cls, pairs: Sequence[LoraPair], dim: int = 0) -> LoraPair:
        """Rows of several pairs stacked: [B1 A1; B2 A2] = [B1 0; 0 B2] @ [A1; A2]."""
        dim = dim % pairs[0].ndim
        if dim == pairs[0].ndim - 1:
            raise NotImplementedError("LoRA concatenation along the input features")
        if all(torch.equal(p.a, pairs[0].a) for p in pairs[1:]):
            return LoraPair(pairs[0].a, torch.cat([p.b for p in pairs], dim=dim))
        # Different A: a block-diagonal B of the summed rank gives the same product.
        ranks = [p.a.shape[0] for p in pairs]
        blocks, start = [], 0
        for pair, rank in zip(pairs, ranks, strict=True):
            padding = (start, sum(ranks) - start - rank)
            blocks.append(torch.nn.functional.pad(pair.b, padding))
            start += rank
        return LoraPair(torch.cat([p.a for p in pairs]), torch.cat(blocks, dim=dim))

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.cat, torch.concat, torch.concatenate):
            return cls.cat(args[0], kwargs.get("dim", args[1] if len(args) > 1 else 0))
        if func is torch.permute:
            return args[0].permute(*args[1:], **kwargs)
        if func is torch.reshape:
            return args[0].reshape(*args[1:], **kwargs)
        if func in (torch.transpose, torch.swapaxes):
            return args[0].transpose(*args[1:], **kwargs)
        if func is torch.split:
            return args[0].split(*args[1:], **kwargs)
        # torch.stack (experts of a mixture-of-experts layer) and everything else.
        raise NotImplementedError(f"{getattr(func, '__name__', func)} on a LoRA pair")


def read_adapter(adapter_dir: Path) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """The adapter's PEFT config, tensors and weights file; LoraGGUFError if one is missing."""
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise LoraGGUFError(
            f"{config_path}: not found; point to a PEFT LoRA adapter directory "
            "(adapter_config.json and adapter_model.safetensors)"
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    weights = adapter_dir / "adapter_model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        return config, load_file(str(weights), device="cpu"), weights
    legacy = adapter_dir / "adapter_model.bin"
    if legacy.is_file():
        return config, torch.load(legacy, map_location="cpu", weights_only=True), legacy
    raise LoraGGUFError(f"{weights}: not found; the adapter directory has no adapter weights")


def refuse_unsupported(config: dict, tensors: dict[str, torch.Tensor], weights: Path) -> None:
    """LoraGGUFError for what a llama.cpp LoRA adapter cannot hold, naming file and field."""
    config_path = weights.parent / "adapter_config.json"
    fix = "Train without it (kodcu-train does not use it), or merge the adapter instead"
    if config.get("peft_type", "LORA") != "LORA":
        raise LoraGGUFError(
            f"{config_path}: peft_type is {config['peft_type']!r}; only LoRA adapters can be "
            "written as a llama.cpp adapter. Merge it into the model instead."
        )
    if config.get("use_dora"):
        raise LoraGGUFError(
            f"{config_path}: use_dora is true; llama.cpp cannot apply DoRA at run time. {fix}."
        )
    if config.get("modules_to_save"):
        raise LoraGGUFError(
            f"{config_path}: modules_to_save = {config['modules_to_save']}: those are whole "
            f"trained layers, which a llama.cpp LoRA file cannot carry. {fix}."
        )
    if config.get("fan_in_fan_out"):
        raise LoraGGUFError(
            f"{config_path}: fan_in_fan_out is true, which is not supported. {fix}."
        )
    for name in tensors:
        if "lora_embedding" in name or "embed_tokens" in name:
            raise LoraGGUFError(
                f"{weights}: tensor {name!r} is a LoRA on the token embeddings, which llama.cpp "
                f"adapters do not support. {fix}."
            )
        if not name.endswith((".lora_A.weight", ".lora_B.weight")):
            raise LoraGGUFError(
                f"{weights}: tensor {name!r} is not a LoRA A/B weight (a trained bias, DoRA "
                f"magnitude or saved module), which a llama.cpp LoRA file cannot carry. {fix}."
            )


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    # PEFT's rule for rank_pattern / alpha_pattern keys: a regex matched against the module
    # name's end, on a dot boundary.
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def lora_pairs(config: dict, tensors: dict[str, torch.Tensor]) -> dict[str, LoraPair]:
    """Base weight name (``model.layers.0.self_attn.q_proj.weight``) -> its LoRA pair.

    Every pair is scaled so that llama.cpp's alpha / rank (with the config's lora_alpha)
    gives PEFT's own scale, which differs under rsLoRA or an alpha_pattern.
    """
    alpha = float(config["lora_alpha"])
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        module, half = name.removeprefix("base_model.model.").rsplit(".lora_", 1)
        halves.setdefault(module, {})[half[0]] = tensor
    pairs = {}
    for module, half in sorted(halves.items()):
        if set(half) != {"A", "B"}:
            raise LoraGGUFError(
                f"{module}: the adapter holds lora_{''.join(half)} without its pair"
            )
        rank = half["A"].shape[0]
        module_alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, alpha))
        wanted = module_alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
        factor = wanted / (alpha / rank)
        b = half["B"].float() * factor if factor != 1.0 else half["B"]
        pairs[module + ".weight"] = LoraPair(half["A"], b)
    return pairs


def chat_template(adapter_dir: Path) -> str | None:
    """The adapter tokenizer's chat template (the one it was trained with), if it has one."""
    jinja = adapter_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    tokenizer_config = adapter_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        template = json.loads(tokenizer_config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, list):  # named templates: llama.cpp reads the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        if template:
            return template
    record = adapter_dir / "kodcu.json"
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8")).get("prompt_template") or None
    return None


def _model_class(base_model_dir: Path) -> tuple[type, dict]:
    from conversion import ModelBase, get_model_class

    if not (base_model_dir / "config.json").is_file():
        raise LoraGGUFError(
            f"{base_model_dir / 'config.json'}: not found; the base model must be a Hugging Face "
            "model directory (the one the adapter was trained on)"
        )
    hparams = ModelBase.load_hparams(base_model_dir, False)
    architectures = hparams.get("text_config", {}).get("architectures") or hparams["architectures"]
    try:
        return get_model_class(architectures[0]), hparams
    except NotImplementedError as exc:
        raise LoraGGUFError(
            f"{base_model_dir / 'config.json'}: architecture {architectures[0]!r} is not "
            "supported by llama.cpp's converter"
        ) from exc


def base_model_entries(adapter_dir: Path) -> list[dict[str, str]] | None:
    """general.base_model.* of the LoRA GGUF: the base's Hub id when the adapter names one.

    A base given as a local folder is left out: the file would otherwise carry a path of
    the machine it was made on (llama.cpp's metadata reader turns the PEFT model card's
    `base_model` into a name and a huggingface.co URL, even for a path).
    """
    from converter.merge import base_reference

    base, _ = base_reference(adapter_dir)
    if Path(base).expanduser().exists() or base.startswith((".", "/", "~")) or "\\" in base:
        return None
    organization, _, name = base.rpartition("/")
    entry = {"name": name, "repo_url": f"https://huggingface.co/{base}"}
    return [entry | ({"organization": organization} if organization else {})]


def write_lora_gguf(
    adapter_dir: Path,
    base_model_dir: Path,
    out_path: Path,
    outtype: str = "f16",
    name: str | None = None,
) -> Path:
    """Write the adapter in `adapter_dir` as a llama.cpp LoRA GGUF at `out_path`.

    `base_model_dir` is the Hugging Face model the adapter was trained on; only its config
    is read (for the architecture, layer count and head counts). `outtype` is "f16" or "f32".
    `name` is general.name (default: the adapter folder's name).
    """
    import gguf

    if outtype not in OUTTYPES:
        raise LoraGGUFError(f"outtype {outtype!r}: choose one of {', '.join(OUTTYPES)}")
    adapter_dir, base_model_dir, out_path = Path(adapter_dir), Path(base_model_dir), Path(out_path)
    config, tensors, weights_file = read_adapter(adapter_dir)
    refuse_unsupported(config, tensors, weights_file)
    pairs = lora_pairs(config, tensors)
    model_class, hparams = _model_class(base_model_dir)
    if any(name.startswith("lm_head.") for name in pairs) and hparams.get("tie_word_embeddings"):
        raise LoraGGUFError(
            f"{adapter_dir / 'adapter_config.json'}: target_modules include lm_head, which this "
            "base model ties to its token embeddings; llama.cpp has no separate output weight "
            "to apply it to. Train without lm_head in target_modules."
        )
    template = chat_template(adapter_dir)
    alpha = float(config["lora_alpha"])

    class LoraModel(model_class):  # type: ignore[misc, valid-type]
        model_arch = model_class.model_arch

        def index_tensors(self, remote_hf_model_id: str | None = None) -> dict:
            return {}  # only the adapter's tensors are written; the base weights are not read

        def get_tensors(self) -> Iterator[tuple[str, Any]]:
            for name, pair in pairs.items():
                # The model class's own filter renames some prefixes and drops what its
                # GGUF leaves out; an adapter on a dropped module has nothing to apply to.
                kept = self.filter_tensors((name, lambda pair=pair: pair))
                if kept is None:
                    raise LoraGGUFError(
                        f"{weights_file}: {name} is a module that llama.cpp's "
                        f"{model_class.__name__} leaves out of the GGUF; the adapter "
                        "cannot apply to it. Train without it in target_modules."
                    )
                yield kept[0], kept[1]()

        def modify_tensors(
            self, data_torch: Any, name: str, bid: int | None
        ) -> Iterable[tuple[str, torch.Tensor]]:
            try:
                renamed = list(super().modify_tensors(data_torch, name, bid))
            except NotImplementedError as exc:
                raise LoraGGUFError(
                    f"{weights_file}: {name}: llama.cpp's {model_class.__name__} rearranges "
                    f"this weight in a way a LoRA pair cannot follow ({exc})"
                ) from exc
            for new_name, pair in renamed:
                if not isinstance(pair, LoraPair) or pair.b.dim() != 2:
                    raise LoraGGUFError(
                        f"{name}: llama.cpp's converter turned it into {new_name}, "
                        "which a LoRA pair cannot represent"
                    )
                yield new_name + ".lora_a", pair.a.contiguous()
                yield new_name + ".lora_b", pair.b.contiguous()

        def generate_extra_tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
            return ()  # rope frequency tables and the like belong to the base GGUF

        def set_type(self) -> None:
            # Called by prepare_metadata after it read the model card, before it writes it.
            self.metadata.base_models = base_models
            if base_models is None:  # PEFT's model card tags the base too: base_model:...:PATH
                tags = self.metadata.tags or []
                self.metadata.tags = [t for t in tags if not t.startswith("base_model:")] or None
            self.gguf_writer.add_type(gguf.GGUFType.ADAPTER)
            self.gguf_writer.add_string(gguf.Keys.Adapter.TYPE, "lora")

        def set_gguf_parameters(self) -> None:
            self.gguf_writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
            if template:
                self.gguf_writer.add_chat_template(template)

        def set_vocab(self) -> None:
            pass  # the vocabulary is the base GGUF's

        def write(self) -> None:  # ModelBase.write without its progress bar: a few MB at most
            self.prepare_tensors()
            self.prepare_metadata(vocab_only=False)
            # prepare_metadata fills "{ftype}" templates in the name; ours is taken as given.
            self.gguf_writer.write_header_to_file(path=out_path)
            self.gguf_writer.write_kv_data_to_file()
            self.gguf_writer.write_tensors_to_file(progress=False)
            self.gguf_writer.close()

    base_models = base_model_entries(adapter_dir)
    ftype = gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        model = LoraModel(
            base_model_dir,
            ftype,
            out_path,
            eager=True,
            model_name=name or adapter_dir.name,
            hparams=hparams,
        )
        model.dir_model_card = adapter_dir  # general.* metadata describes the adapter
        model.write()
    log.info("LoRA GGUF written: %s (%d pairs, alpha %g)", out_path, len(pairs), alpha)
    if template is None:
        log.warning("%s: the adapter has no chat template; the GGUF carries none", adapter_dir)
    return out_path
