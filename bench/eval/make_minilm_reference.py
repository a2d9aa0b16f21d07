"""Make tests/ingest/fixtures/minilm_reference.json: 200 sentences and their fp32 all-MiniLM-L6-v2 vectors."""
import base64, json, re, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, ".")
import importlib.util
spec = importlib.util.spec_from_file_location("minilm_ref", sys.argv[1])
ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
MiniLMEmbedder = ref.MiniLMEmbedder

hand = [
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
texts = []
for path in ["README.md", "docs/postgres.md", "docs/http-worker.md"]:
    for piece in re.split(r"(?<=[.!?])\s+|\n\n+", Path(path).read_text()):
        piece = " ".join(piece.split())
        if 20 <= len(piece) <= 600 and piece not in texts:
            texts.append(piece)
sentences = hand + texts[: 200 - len(hand)]
assert len(sentences) == 200, len(sentences)
vectors = MiniLMEmbedder.shared().embed(sentences)
scale = np.abs(vectors).max(axis=1) / 127.0
scale[scale == 0] = 1.0
q = np.round(vectors / scale[:, None]).astype(np.int8)
back = q.astype(np.float32) * scale[:, None]
back /= np.maximum(np.linalg.norm(back, axis=1, keepdims=True), 1e-12)
cos = (back * vectors).sum(1)
print("quantisation cosine min", cos[np.linalg.norm(vectors, axis=1) > 0].min())
out = {
    "about": ("200 sentences and their all-MiniLM-L6-v2 vectors from the fp32 reference (the NumPy transformer "
              "conveyor/ingest/minilm.py at commit 04a5ab6, checked against sentence-transformers' documented "
              "values; 256-token truncation), each stored as int8 with a per-vector scale: value = int8 * scale. "
              "Made by bench/eval/make_minilm_reference.py."),
    "model": "all-MiniLM-L6-v2",
    "dimensions": 384,
    "sentences": sentences,
    "scales": [float(f"{s:.6e}") for s in scale],
    "vectors_int8_base64": [base64.b64encode(row.tobytes()).decode() for row in q],
}
Path("tests/ingest/fixtures/minilm_reference.json").write_text(json.dumps(out, ensure_ascii=False, indent=0) + "\n")
