"""Reading a teacher's answers. Small models answer loosely, so every parser returns None (or
raises `Rejected` with a reason) instead of guessing; callers count the reasons."""

from __future__ import annotations

import ast
import doctest
import math
import re
from dataclasses import dataclass


class Rejected(Exception):
    """A teacher answer that cannot be used; `reason` is one of a small, countable set."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)


def code_blocks(text: str) -> list[str]:
    """Fenced code blocks (python or unlabelled); an unclosed last fence counts (truncated
    answers). Without fences, the whole answer is taken as code."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py")]
    if blocks:
        return blocks
    return [] if "```" in text else [text]


def numbered_list(text: str, limit: int) -> list[str]:
    """'1. Lists' / '2) Tuples' / '- Sets' lines -> titles, deduplicated, at most `limit`."""
    items: list[str] = []
    for line in text.splitlines():
        match = re.match(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?)\s*$", line)
        if not match:
            continue
        title = re.sub(r"[*_`#]+", "", match.group(1)).strip().rstrip(":").strip()
        title = re.split(r"\s+[-–—:]\s+", title, maxsplit=1)[0].strip()
        if 2 <= len(title) <= 100 and title.lower() not in {t.lower() for t in items}:
            items.append(title)
        if len(items) == limit:
            break
    return items


@dataclass
class Function:
    """A generated function split the way Phi-1's CodeExercises are: prompt and body."""

    name: str
    prompt: str
    """Imports, signature and docstring: what a model is given."""
    solution: str
    """The body after the docstring: what a model must write."""

    @property
    def code(self) -> str:
        return self.prompt + self.solution

    def stub(self) -> str:
        """The same function with an empty body, to catch tests that pass without it."""
        return self.prompt + "    pass\n"

    def stubs(self) -> list[str]:
        """Bodies a real test must tell apart from the solution: empty, and handing back the
        first argument unchanged (a weak teacher's favourite 'function' is the identity)."""
        stubs = [self.stub()]
        try:
            tree = ast.parse(self.stub())
        except SyntaxError:
            return stubs
        function = next((n for n in tree.body if isinstance(n, ast.FunctionDef)), None)
        if function is not None and function.args.args:
            stubs.append(self.prompt + f"    return {function.args.args[0].arg}\n")
        return stubs


def parse_function(
    answer: str, name: str | None = None, *, require_docstring: bool = True
) -> Function:
    """The first top-level function with a docstring in `answer` (or the one called `name`).
    Without `require_docstring` (repairs: only the body is used) a missing docstring is fine."""
    parsed = None
    for block in code_blocks(answer):
        if "def " not in block:
            continue
        try:
            tree = ast.parse(block)
        except SyntaxError as exc:
            parsed = parsed or exc
            continue
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        if name is not None:
            functions = [f for f in functions if f.name == name]
        if functions:
            parsed = (block, tree, functions[0])
            break
    if parsed is None:
        raise Rejected("no function", "the answer has no Python function")
    if isinstance(parsed, SyntaxError):
        raise Rejected("syntax error", f"line {parsed.lineno}: {parsed.msg}")
    block, tree, function = parsed
    lines = block.splitlines(keepends=True)
    docstring = ast.get_docstring(function, clean=False)
    if not docstring or not docstring.strip():
        if require_docstring:
            raise Rejected("no docstring", f"{function.name} has no docstring")
        function.body.insert(0, ast.Pass())  # placeholder so the body starts at index 1
        function.body[0].end_lineno = function.body[1].lineno - 1
    body = function.body
    if len(body) < 2:
        raise Rejected("empty solution", f"{function.name} has only a docstring")
    if all(isinstance(s, ast.Pass) or _is_ellipsis(s) for s in body[1:]):
        raise Rejected("empty solution", f"{function.name}'s body is `pass`")
    if function.col_offset != 0 or body[1].col_offset != 4:
        raise Rejected("bad indentation", "use 4-space indentation at the top level")
    # Imports before the function belong to the prompt: the body may need them.
    imports = [
        ast.get_source_segment(block, node)
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno < function.lineno
    ]
    head = "".join(f"{line}\n" for line in imports if line)
    if head:
        head += "\n\n"
    first_line = (
        function.decorator_list[0].lineno if function.decorator_list else function.lineno
    ) - 1
    prompt = "".join(lines[first_line : body[0].end_lineno])
    solution = "".join(lines[body[0].end_lineno : function.end_lineno])
    if not prompt.endswith("\n"):
        prompt += "\n"
    if not solution.endswith("\n"):
        solution += "\n"
    return Function(function.name, head + prompt, solution)


def _is_ellipsis(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and getattr(statement.value, "value", None) is Ellipsis


def first_function(text: str) -> str:
    """A base model's continuation cut after its first top-level function: from the `def` line
    through the lines that belong to it (indented or blank), so whatever the model wrote next
    (another function, prints, a stray comment) is not parsed with it."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith("def ")), None)
    if start is None:
        return ""
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
        end += 1
    return "".join(lines[start:end]).rstrip() + "\n"


@dataclass(frozen=True)
class DocExample:
    """One `>>> call` / expected-value pair of a docstring, as an assert and where it sits."""

    test: str
    """`assert <call> == <expected>`."""
    lines: range
    """Its lines (`>>>` line and expected value) in the function's prompt, 0-based."""


def docstring_examples(function: Function) -> list[DocExample]:
    """The docstring's >>> examples that call the function and show a value, as asserts (as
    HumanEval's prompts show them; doctest's own parser finds them). An example whose expected
    output is not a Python expression (a traceback, printed text) is not a test."""
    try:
        tree = ast.parse(function.prompt + "    pass\n")
    except SyntaxError:
        return []
    node = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function.name), None
    )
    docstring = ast.get_docstring(node, clean=False) if node is not None else None
    if not docstring:
        return []
    first_line = node.body[0].lineno - 1  # the docstring starts on its opening quotes' line
    examples = []
    for example in doctest.DocTestParser().get_examples(docstring):
        source, want = example.source.strip(), example.want.strip()
        try:
            call = ast.parse(source, mode="eval")
            expected = ast.parse(want, mode="eval")
        except SyntaxError:
            continue
        if not want or not _calls(call, function.name) or "\n" in want:
            continue
        if isinstance(expected.body, ast.Tuple) and not want.startswith("("):
            want = f"({want})"  # `assert f() == 1, 2` would assert f() == 1 with message 2
        start = first_line + example.lineno
        count = example.source.count("\n") + example.want.count("\n")
        examples.append(DocExample(f"assert {source} == {want}", range(start, start + count)))
    return examples


def without_examples(function: Function, drop: list[DocExample]) -> Function:
    """`function` with these docstring examples taken out (the ones its body does not pass):
    the prompt a model is given must not show wrong expected values. Checked by reading the
    examples back: exactly the others must remain."""
    remaining = [e.test for e in docstring_examples(function) if e not in drop]
    lines = function.prompt.splitlines(keepends=True)
    dropped = {line for example in drop for line in example.lines}
    prompt = "".join(line for index, line in enumerate(lines) if index not in dropped)
    rewritten = Function(function.name, prompt, function.solution)
    if [e.test for e in docstring_examples(rewritten)] != remaining:
        raise Rejected("docstring rewrite failed", "the failing examples could not be taken out")
    return rewritten


def parse_asserts(answer: str, name: str, limit: int = 10) -> list[str]:
    """`assert` statements in `answer` that call `name` (top level or inside test functions)."""
    found: list[str] = []
    saw_syntax_error = False
    for block in code_blocks(answer):
        try:
            tree = ast.parse(block)
        except SyntaxError:
            saw_syntax_error = True
            # A truncated last line is common; salvage the lines that parse on their own.
            for line in block.splitlines():
                try:
                    statement = ast.parse(line.strip())
                except SyntaxError:
                    continue
                found += _calling_asserts(statement, line.strip(), name)
            continue
        found += _calling_asserts(tree, block, name)
    unique = list(dict.fromkeys(found))[:limit]
    if not unique:
        if saw_syntax_error:
            raise Rejected("syntax error", "the tests do not parse")
        raise Rejected("tests do not call the function", f"no assert calls {name}()")
    return unique


def _calling_asserts(tree: ast.AST, source: str, name: str) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        segment = ast.get_source_segment(source, node)
        if _calls(node.test, name) and segment:
            out.append(" ".join(segment.split()) if "\n" in segment else segment)
    return out


def _calls(tree: ast.AST, name: str) -> bool:
    """Whether `tree` calls the function `name`."""
    return any(
        isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == name
        for sub in ast.walk(tree)
    )


_NUMBER = r"[-+]?\$?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?%?"


def parse_number(text: str) -> float | None:
    """The number in '12', '$1,200.50', '-3.5e2', '45%'; None when there is none."""
    match = re.search(_NUMBER, text)
    if not match:
        return None
    raw = match.group(0).replace("$", "").replace(",", "").rstrip("%")
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_reasoning(answer: str) -> tuple[str, str, float]:
    """'Problem: ... Solution: ... Answer: N' -> (problem, solution, answer)."""
    pattern = re.compile(
        r"\**Problem\**\s*:?\**\s*(?P<problem>.+?)\n\s*\**Solution\**\s*:?\**\s*(?P<solution>.+?)"
        r"\n\s*\**(?:Final )?Answer\**\s*:?\**\s*(?P<answer>[^\n]+)",
        re.S | re.I,
    )
    match = pattern.search(answer)
    if not match:
        raise Rejected("wrong format", "expected 'Problem:', 'Solution:' and 'Answer:'")
    problem, solution = match.group("problem").strip(), match.group("solution").strip()
    number = parse_number(match.group("answer"))
    if number is None:
        raise Rejected("no numeric answer", match.group("answer")[:80])
    if len(problem) < 20 or len(solution) < 20:
        raise Rejected("too short", "problem or solution under 20 characters")
    return problem, solution, number


def numbers_agree(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def parse_dialogue(answer: str, min_turns: int) -> list[dict[str, str]]:
    """'Student: ... / Teacher: ...' -> chat turns (student=user, teacher=assistant)."""
    turns: list[dict[str, str]] = []
    speaker = re.compile(r"^\s*\**(Student|Teacher)\**\s*:\**\s*(.*)$", re.I)
    for line in answer.splitlines():
        match = speaker.match(line)
        if match:
            role = "user" if match.group(1).lower() == "student" else "assistant"
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"] += "\n" + match.group(2)
            else:
                turns.append({"role": role, "content": match.group(2)})
        elif turns:
            turns[-1]["content"] += "\n" + line
    for turn in turns:
        turn["content"] = turn["content"].strip()
    turns = [t for t in turns if t["content"]]
    if not turns:
        raise Rejected("wrong format", "no 'Student:'/'Teacher:' turns")
    if turns[0]["role"] != "user":
        turns = turns[1:]
    if len(turns) < min_turns:
        raise Rejected("too few turns", f"{len(turns)} < {min_turns}")
    if len({t["content"] for t in turns}) < len(turns):
        raise Rejected("repeated turns", "the conversation repeats itself")
    return turns


_LITERALS = {
    "int": "int",
    "float": "float | int",
    "str": "str",
    "bool": "bool",
    "list[int]": '"[" (int (", " int){0,6})? "]"',
    "list[str]": '"[" (str (", " str){0,5})? "]"',
    "list[float]": '"[" (float (", " float){0,5})? "]"',
    "dict[str, int]": '"{" (str ": " int (", " str ": " int){0,4})? "}"',
}
_LITERAL_RULES = (
    'int ::= "-"? [0-9]{1,4}\n'
    'float ::= "-"? [0-9]{1,4} "." [0-9]{1,3}\n'
    'str ::= "\'" [a-zA-Z0-9 ,.!?]{0,20} "\'"\n'
    'bool ::= "True" | "False"\n'
    'value ::= int | float | str | bool | "None" | list | dict\n'
    'list ::= "[" (value (", " value){0,6})? "]"\n'
    'dict ::= "{" (str ": " value (", " str ": " value){0,4})? "}"\n'
)


def asserts_grammar(
    name: str, count: int = 6, params: list[str] | None = None, returns: str | None = None
) -> str:
    """GBNF for `count` lines `assert name(<literals>) == <literal>`: the call and comparison
    are forced, and the arguments and expected value must be Python literals, of the annotated
    types when the signature has plain ones, so a weak teacher can neither refer to variables
    it never defined nor pass a number where a list is expected (its two commonest failures)."""
    if params is not None and all(p in _LITERALS for p in params) and params:
        args = ' ", " '.join(f"({_LITERALS[p]})" for p in params)
    else:
        args = 'value (", " value){0,3}'
    expected = f"({_LITERALS[returns]})" if returns in _LITERALS else "value"
    return (
        f"root ::= {' '.join(['line'] * count)}\n"
        f'line ::= "assert {name}(" {args} ") == " {expected} "\\n"\n' + _LITERAL_RULES
    )


def signature_types(prompt: str, name: str) -> tuple[list[str] | None, str | None]:
    """Annotations of `name`'s parameters and return, as source text (None where absent)."""
    try:
        tree = ast.parse(prompt + "    pass\n")
    except SyntaxError:
        return None, None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            params = [
                ast.unparse(a.annotation) if a.annotation is not None else "?"
                for a in node.args.args
            ]
            returns = ast.unparse(node.returns) if node.returns is not None else None
            return params, returns
    return None, None


# Small models wander into prose, fences and half-finished formats; these grammars (llama.cpp's
# GBNF) make the shape of an answer impossible to get wrong and leave the content to the model.
FUNCTION_GRAMMAR = r"""root ::= "def " name "(" params ") -> " type ":\n    \"\"\"" doc "\"\"\"\n" body
name ::= [a-z] [a-z0-9_]*
params ::= param (", " param){0,2}
param ::= [a-z] [a-z0-9_]* ": " type
type ::= "int" | "float" | "str" | "bool" | "list[int]" | "list[str]" | "dict[str, int]"
doc ::= [^"\n]+
body ::= ("    " [^\n]+ "\n"){1,8}
"""
"""Plain types in the signature: the asserts writer then passes arguments of the right type,
and the function stays small enough for a weak teacher to get right."""

COMPLETION_FUNCTION_GRAMMAR = r"""root ::= "def " name "(" params ") -> " type ":\n    \"\"\"" doc "\n" example example example? "    \"\"\"\n" body
name ::= [a-z] [a-z0-9_]*
params ::= param (", " param){0,2}
param ::= [a-z] [a-z0-9_]* ": " type
type ::= "int" | "float" | "str" | "bool" | "list[int]" | "list[str]" | "dict[str, int]"
doc ::= [^"\n]+
example ::= "    >>> " [a-z] [a-z0-9_]* "(" [^\n]+ "\n    " [^\n]+ "\n"
body ::= ("    " [^\n]+ "\n"){0,11} "    " [^\n]+ ("\n\n" | "\n\n\n")
"""
"""HumanEval's shape for a base model continuing a file: a typed signature, a one-line
docstring with two or three >>> examples, then a body. A base model never stops on its own (it
writes the next function), so the body ends at a blank line, which the model writes as one
token with the newline before it."""

REASONING_GRAMMAR = r"""root ::= "Problem: " problem "\nSolution: " solution "\nAnswer: " number "\n"
problem ::= [^\n]+
solution ::= [^\n]+ ("\n" [^\n]+){0,6}
number ::= "-"? [0-9]+ ("." [0-9]+)?
"""

DIALOGUE_GRAMMAR = r"""root ::= pair pair pair?  pair?
pair ::= "Student: " [^\n]+ "\nTeacher: " [^\n]+ "\n"
"""


def outline_grammar(count: int) -> str:
    items = " ".join(f'"{i}. " title "\\n"' for i in range(1, count + 1))
    return f"root ::= {items}\ntitle ::= [^\\n]+\n"
