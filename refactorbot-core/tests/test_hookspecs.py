"""Every hook spec is documented in docs/hooks.md with its exact signature."""

import inspect
import re
from pathlib import Path

import pytest
from refactorbot import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


def specs():
    return {
        name: func for name, func in vars(hookspecs).items() if callable(func) and hasattr(func, "refactorbot_spec")
    }


def test_there_are_hook_specs():
    assert {"register_slices", "before_llm_call", "provide_event_bus"} <= set(specs())


@pytest.mark.skipif(not DOCS.exists(), reason="docs/ is not next to this checkout")
@pytest.mark.parametrize("name", sorted(specs()))
def test_hook_is_documented_with_its_signature(name):
    func = specs()[name]
    params = ", ".join(inspect.signature(func).parameters)
    headings = re.findall(r"^### `(\w+)\(([^)]*)\)`", DOCS.read_text(), re.MULTILINE)
    assert (name, params) in headings, f"docs/hooks.md lacks '### `{name}({params})`'"


@pytest.mark.skipif(not DOCS.exists(), reason="docs/ is not next to this checkout")
def test_docs_list_no_hook_that_does_not_exist():
    headings = re.findall(r"^### `(\w+)\(", DOCS.read_text(), re.MULTILINE)
    assert sorted(headings) == sorted(specs())


@pytest.mark.parametrize("name", sorted(specs()))
def test_every_hook_has_a_one_line_docstring(name):
    doc = specs()[name].__doc__
    assert doc and len(doc.strip().splitlines()) == 1


def test_firstresult_hooks():
    first = {n for n, f in specs().items() if f.refactorbot_spec.get("firstresult")}
    assert first == {
        "before_operation",
        "before_llm_call",
        "before_tool_call",
        "provide_event_bus",
        "provide_singleton_lease",
        "provide_tracer",
        "provide_slice_transport",
    }


def test_the_veto_hooks_share_one_return_type():
    assert set(hookspecs.VETO_HOOKS) == {"before_operation", "before_llm_call", "before_tool_call"}
    vetoes = {n for n, f in specs().items() if inspect.signature(f).return_annotation == "Veto"}
    assert vetoes == set(hookspecs.VETO_HOOKS)


@pytest.mark.parametrize("name", sorted(specs()))
def test_every_hook_parameter_is_typed(name):
    signature = inspect.signature(specs()[name])
    untyped = [p.name for p in signature.parameters.values() if p.annotation in (inspect.Parameter.empty, "Any")]
    assert not untyped, f"{name}: parameters typed Any or not at all: {untyped}"
    assert signature.return_annotation not in (inspect.Signature.empty, "Any"), name
