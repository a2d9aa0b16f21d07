"""The app of the scheduler's process tests: one task, fired every second by a schedule declared in code."""

from __future__ import annotations

from conveyor import Conveyor

app = Conveyor()  # CONVEYOR_DATABASE_URL, set by the test


@app.periodic("* * * * * *", name="every-second")
@app.task
def beat() -> str:
    return "beat"
