"""Every hook is specified, documented in its docstring and in the README with its signature."""

import inspect
from pathlib import Path

from nst_core import hookspecs

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def hook_functions():
    return [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("nst_")]


def test_all_lists_every_hook():
    assert sorted(hookspecs.__all__) == sorted(f.__name__ for f in hook_functions())
    assert len(hook_functions()) >= 4


def test_every_hook_has_a_docstring_and_is_in_the_readme():
    for hook in hook_functions():
        assert hook.__doc__ and len(hook.__doc__.strip()) > 40, hook.__name__
        signature = f"{hook.__name__}({', '.join(inspect.signature(hook).parameters)})"
        assert f"`{signature}`" in README, f"README.md does not document {signature}"
