"""A long LLM-style task: a report written section by section from a streaming model, with progress a client can
watch and a cancel that stops it mid-way. The model is simulated (words at a steady rate), so it runs offline; put a
real streaming client in `FakeLLM`'s place.

    cd examples/llm_report
    conveyor worker --app report:app                        # the worker, in one shell
    python report.py start "Quarterly sales" --sections 5   # enqueue, then follow its progress until it ends
    python report.py start "Churn analysis" --no-wait       # prints the job id
    python report.py cancel <job id>
    python report.py show <job id>

The report lands in `$CONVEYOR_DATA_DIR/reports/<job id>.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from conveyor import Conveyor, JobContext

app = Conveyor(demo_tasks=False)

HEADINGS = ["Summary", "Context", "Findings", "Risks", "Recommendations", "Next steps", "Appendix"]
VOCABULARY = "the a revenue growth market customers churn quarter costs risk team plan data trend price".split()


class FakeLLM:
    """Stands in for a streaming chat-completion client: yields one word per token, at a steady pace."""

    def __init__(self, seconds_per_token: float) -> None:
        self.seconds_per_token = seconds_per_token

    async def stream(self, prompt: str, max_tokens: int) -> AsyncIterator[str]:
        words = random.Random(prompt)  # the same prompt writes the same text
        for _ in range(max_tokens):
            await asyncio.sleep(self.seconds_per_token)
            yield words.choice(VOCABULARY)


@app.task(queue="llm", timeout=3600, max_retries=1)
async def generate_report(
    ctx: JobContext, title: str, sections: int = 4, words_per_section: int = 80, seconds_per_token: float = 0.02
) -> dict[str, Any]:
    """Write a report of `sections` sections. Cancelled, it stops at once and leaves no half-written file."""
    if not 1 <= sections <= len(HEADINGS):
        raise ValueError(f"sections must be 1 to {len(HEADINGS)}")
    reports = Path(app.settings.data_dir) / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    draft, final = reports / f"{ctx.job_id}.draft", reports / f"{ctx.job_id}.md"
    llm, total, written = FakeLLM(seconds_per_token), sections * words_per_section, 0
    try:
        with draft.open("w") as out:
            out.write(f"# {title}\n")
            for number, heading in enumerate(HEADINGS[:sections], start=1):
                ctx.progress(100 * written // total, stage="writing", section=heading, number=number, of=sections)
                out.write(f"\n## {heading}\n\n")
                async for word in llm.stream(f"{title}: {heading}", max_tokens=words_per_section):
                    out.write(word + " ")
                    written += 1
                    if written % 20 == 0:  # progress is cheap (the worker batches writes), but not free
                        ctx.progress(100 * written // total, stage="writing", section=heading, number=number,
                                     of=sections)
        draft.rename(final)
    except asyncio.CancelledError:  # a cancel (or the worker's shutdown) interrupts the task here
        draft.unlink(missing_ok=True)
        raise
    return {"path": str(final), "words": written, "sections": sections}


def follow(job_id: str) -> int:
    """Print the job's progress as it moves, until it ends; exit code 0 if it completed."""
    shown = None
    while True:
        job = app.require_job(job_id)
        info = job.progress_info or {}
        line = f"{job.status.value:>10} {job.progress:3d}%  {info.get('section', '')}"
        if line != shown:
            print(line, flush=True)
            shown = line
        if job.status.is_terminal:
            print(job.result if job.result is not None else job.error)
            return 0 if job.status.value == "completed" else 1
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="enqueue a report and follow it")
    start.add_argument("title")
    start.add_argument("--sections", type=int, default=4)
    start.add_argument("--words", type=int, default=80, help="words per section")
    start.add_argument("--token-seconds", type=float, default=0.02, help="the simulated model's pace")
    start.add_argument("--no-wait", action="store_true", help="print the job id and return")
    for name in ("cancel", "show"):
        commands.add_parser(name).add_argument("job_id")
    args = parser.parse_args(argv)

    if args.command == "start":
        job = generate_report.enqueue(
            title=args.title, sections=args.sections, words_per_section=args.words,
            seconds_per_token=args.token_seconds,
        )
        print(job.id, flush=True)
        return 0 if args.no_wait else follow(job.id)
    if args.command == "cancel":
        print(app.cancel(args.job_id).status.value)
        return 0
    job = app.require_job(args.job_id)
    print(job.status.value, f"{job.progress}%", job.result if job.result is not None else job.error or "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
