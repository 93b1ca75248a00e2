r"""An MBPP row in HumanEval's shape: a signature and docstring, continued with the body.

    prompt, body = function_prompt(
        "Write a function to add one.", "def add_one(x):\n    return x + 1",
        ["assert add_one(1) == 2"])
    print(prompt + body)
    # def add_one(x):
    #     '''Write a function to add one.
    #     >>> add_one(1)
    #     2
    #     '''
    #     return x + 1

HumanEval asks a base model to complete a function whose docstring states the task
with examples; MBPP's train split has the same content as a task text, a solution and
asserts. This is `layout: function` of format mbpp (trainer/data.py). The function is
the one the first test calls; whatever comes before it in the solution (imports,
helpers) stays before it in the prompt, as HumanEval's prompts carry their imports and
helpers. Asserts of the form `assert f(...) == value` become doctest examples; others
are shown as they are.
"""

from __future__ import annotations

import ast


class NoFunction(ValueError):
    """The solution has no function in HumanEval's shape; the message says why."""


def function_prompt(text: str, code: str, tests: list[str]) -> tuple[str, str]:
    """(prompt, body): the code up to the tested function's docstring, and its body."""
    name = _called_name(tests[0])
    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError) as error:
        raise NoFunction(f"the code does not parse ({type(error).__name__})") from None
    functions = [node for node in module.body if isinstance(node, ast.FunctionDef)]
    target = next((node for node in functions if node.name == name), None)
    if target is None:
        raise NoFunction(f"the code has no top-level function {name!r}, which the tests call")
    if target is not module.body[-1]:
        raise NoFunction(f"code follows function {name!r}; its body would not end the text")
    lines = code.splitlines()
    first_body = target.body[0]
    if isinstance(first_body, ast.Expr) and isinstance(first_body.value, ast.Constant):
        raise NoFunction(f"function {name!r} already has a docstring")
    if first_body.lineno == target.lineno:
        raise NoFunction(f"function {name!r} has its body on the def line")
    head = "\n".join(lines[: first_body.lineno - 1])  # decorators, signature, code before
    body = "\n".join(lines[first_body.lineno - 1 :]).rstrip()
    indent = _indent(lines[first_body.lineno - 1])
    return f"{head}\n{_docstring(text, tests, indent)}", body


def _called_name(test: str) -> str:
    """The function an MBPP assert calls first: `assert f(x) == 3` gives "f"."""
    try:
        tree = ast.parse(test.strip())
    except SyntaxError:
        raise NoFunction("the first test does not parse") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id
    raise NoFunction("the first test calls no function by name")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _docstring(text: str, tests: list[str], indent: str) -> str:
    """HumanEval's docstring layout: the task, then one doctest example per test."""
    lines = [f'{indent}"""{text.strip()}']
    for test in tests:
        lines += [indent + line for line in _example(test.strip())]
    lines.append(f'{indent}"""')
    return "\n".join(lines) + "\n"


def _example(test: str) -> list[str]:
    """`assert f(x) == y` as a doctest (`>>> f(x)`, then `y`); anything else as written."""
    try:
        node = ast.parse(test).body[0]
    except (SyntaxError, IndexError):
        return [test]
    if (
        isinstance(node, ast.Assert)
        and isinstance(node.test, ast.Compare)
        and len(node.test.ops) == 1
        and isinstance(node.test.ops[0], ast.Eq)
    ):
        call = ast.get_source_segment(test, node.test.left)
        expected = ast.get_source_segment(test, node.test.comparators[0])
        if call and expected and "\n" not in call + expected:
            return [f">>> {call}", expected]
    return [test]
