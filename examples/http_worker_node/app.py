"""The Conveyor app beside the Node worker: it declares the `word_count` task, so enqueueing validates its arguments
against the type hints, and puts it on the queue `node`, which only the Node worker (worker.mjs) serves.

    cd examples/http_worker_node
    conveyor serve --app app:app --queues default   # the API; its integrated worker leaves the queue `node` alone
    node worker.mjs                                 # another shell: claims word_count jobs over HTTP
    curl -s localhost:8000/api/v1/jobs -H 'content-type: application/json' \
         -d '{"type": "word_count", "args": {"text": "the cat and the hat"}}'
"""

from __future__ import annotations

from conveyor import Conveyor, JobContext

app = Conveyor()


@app.task(queue="node", max_retries=2, timeout=600)
def word_count(ctx: JobContext, text: str, top: int = 3) -> dict[str, object]:
    """Count the words of a text and name the most frequent ones. Runs in the Node worker, never in Python."""
    raise RuntimeError("word_count runs in the Node worker (examples/http_worker_node/worker.mjs)")
