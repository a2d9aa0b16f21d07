"""The plugin interface: what the built-ins register, and a user's plugin beside them."""

from __future__ import annotations

import pytest

from conveyor import ConfigError, Conveyor
from conveyor.plugins import Plugin
from conveyor.plugins.builtin import BUILTIN_PLUGINS


def test_the_builtins_come_first_then_the_users() -> None:
    mine = Plugin("mine")
    app = Conveyor("sqlite:///:memory:", plugins=[mine])
    names = ["demo", "ingest", "schedules", "workflows", "webhooks", "dashboard", "mine"]
    assert [p.name for p in app.plugins] == names
    assert app.plugins[: len(BUILTIN_PLUGINS)] == BUILTIN_PLUGINS


def test_a_plugins_tasks_are_registered_and_the_builtin_ones_follow_the_flags() -> None:
    def register(app: Conveyor) -> None:
        app.task(name="mine.hello")(lambda: "hello")

    only_mine = Conveyor("sqlite:///:memory:", demo_tasks=False, plugins=[Plugin("mine", tasks=register)])
    assert list(only_mine.tasks) == ["mine.hello"]
    demo_only = Conveyor("sqlite:///:memory:", ingest_tasks=False)
    assert sorted(demo_only.tasks) == ["demo.echo", "demo.fail", "demo.sleep"]


def test_two_plugins_of_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="two plugins share a name: demo, mine"):
        Conveyor("sqlite:///:memory:", plugins=[Plugin("mine"), Plugin("mine"), Plugin("demo")])


def test_making_an_app_loads_no_web_or_terminal_library() -> None:
    """The plugins' hooks import their routes, commands and pages only when asked (a worker needs the tasks)."""
    import subprocess
    import sys

    code = (
        "import sys; from conveyor import Conveyor; Conveyor('sqlite:///:memory:');"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'typer', 'rich', 'jinja2'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
