"""An Ollama model directory: the GGUF and a Modelfile whose TEMPLATE renders the model's chat
template and whose stop parameters are its end-of-turn tokens.

Ollama's TEMPLATE is a Go text/template, a model's chat template is Jinja; translating one
language into the other is not feasible in general. So the chat template is *recognised*: probe
conversations (with and without a system prompt) are rendered through the Jinja template and
compared with each known family's rendering (ChatML, Syllabus's own, Phi-3, Llama-3, Gemma); a
family that reproduces every probe gives the Go template, written here for Ollama's data
(`.System`: the system messages joined; `.Messages`: each with `.Role` and `.Content`, the system
ones included, as Ollama's template.Execute passes them). A default system prompt that the
template inserts when there is none (SmolLM2's) is found by the same probes and kept. Anything
else is refused with what to do: give the TEMPLATE yourself.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gguf

from syllabus.errors import UserError
from syllabus.export.gguf import GGUFExport, gguf_of_hf

Messages = list[dict[str, str]]

SYSTEM_MARK = "SYSTEM-PROMPT-MARK-7f3a"
"""A system prompt no template writes itself: where it lands shows where a default one goes."""

PROBES: list[Messages] = [
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "2 + 3 is 5."},
        {"role": "user", "content": "And 4 * 5?"},
    ],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
    [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Another one?"},
    ],
    [{"role": "user", "content": "Hello"}],
]
"""Two-turn and one-turn conversations, with and without a system prompt; each is rendered with
the generation prompt, as a chat request is."""


@dataclass(frozen=True)
class TurnFamily:
    """A chat template family: each message is `start(role) + content + end`, roles renamed
    (Gemma's "model"), and the generation prompt opens an assistant turn. Where the system
    prompt has no turn of its own (Gemma), it is prepended to the first user message."""

    name: str
    start: Callable[[str], str]
    end: str
    generation: str
    stops: tuple[str, ...]
    go_start: Callable[[str], str]
    """The turn's opening in Go template syntax, given a Go expression for the role."""
    system_in_first_user: str | None = None
    """Gemma: the system prompt goes before the first user message, followed by this."""

    def render(self, messages: Messages, default_system: str | None = None) -> str:
        system = [m["content"] for m in messages if m["role"] == "system"]
        rest = [m for m in messages if m["role"] != "system"]
        text = ""
        prompt = "\n\n".join(system) if system else default_system
        if prompt is not None and self.system_in_first_user is None:
            text += self.start("system") + prompt + self.end
        first_user = True
        for message in rest:
            content = message["content"]
            prepend = self.system_in_first_user is not None and prompt is not None
            if message["role"] == "user" and first_user and prepend:
                content = prompt + self.system_in_first_user + content
            if message["role"] == "user":
                first_user = False
            text += self.start(message["role"]) + content + self.end
        return text + self.generation

    def go_template(self, default_system: str | None = None) -> str:
        """This family's rendering for Ollama's data, in Go text/template syntax."""
        system = "{{ $system := .System }}"
        if default_system is not None:
            system += f"{{{{ if not $system }}}}{{{{ $system = {go_string(default_system)} }}}}"
            system += "{{ end }}"
        last = '{{ $last := "" }}{{ range .Messages }}{{ $last = .Role }}{{ end }}'
        body = ""
        if self.system_in_first_user is None:
            body += f"{{{{ if $system }}}}{self.go_start('system')}{{{{ $system }}}}{self.end}"
            body += "{{ end }}"
            turn = f"{self.go_start('.Role')}{{{{ .Content }}}}{self.end}"
            body += f'{{{{ range .Messages }}}}{{{{ if ne .Role "system" }}}}{turn}'
            body += "{{ end }}{{ end }}"
        else:
            first = "{{ $first := true }}"
            user = (
                f"{self.go_start('user')}{{{{ if and $first $system }}}}{{{{ $system }}}}"
                f"{go_text(self.system_in_first_user)}{{{{ end }}}}{{{{ .Content }}}}{self.end}"
                "{{ $first = false }}"
            )
            assistant = f"{self.go_start('assistant')}{{{{ .Content }}}}{self.end}"
            body += (
                f'{first}{{{{ range .Messages }}}}{{{{ if eq .Role "user" }}}}{user}'
                f'{{{{ else if eq .Role "assistant" }}}}{assistant}{{{{ end }}}}{{{{ end }}}}'
            )
        generation = f'{{{{ if ne $last "assistant" }}}}{self.generation}{{{{ end }}}}'
        return system + last + body + generation


def go_string(text: str) -> str:
    """A Go string literal (JSON's escapes are Go's, with the text kept as UTF-8)."""
    return json.dumps(text, ensure_ascii=False)


def go_text(text: str) -> str:
    """Literal template text; `{{` would open an action, so it goes through a string."""
    return f"{{{{ {go_string(text)} }}}}" if "{{" in text else text


def _role_tag(open_: str, close: str, rename: dict[str, str] | None = None):
    rename = rename or {}

    def start(role: str) -> str:
        return f"{open_}{rename.get(role, role)}{close}"

    def go_start(role: str) -> str:
        if role.startswith("."):
            expr = f"{{{{ {role} }}}}"
            for old, new in rename.items():
                expr = f'{{{{ if eq {role} "{old}" }}}}{new}{{{{ else }}}}{expr}{{{{ end }}}}'
            return f"{open_}{expr}{close}"
        return start(role)

    return start, go_start


def _family(name: str, open_: str, close: str, end: str, generation_role: str = "assistant",
            stops: tuple[str, ...] = (), rename: dict[str, str] | None = None,
            system_in_first_user: str | None = None) -> TurnFamily:  # fmt: skip
    start, go_start = _role_tag(open_, close, rename)
    return TurnFamily(
        name, start, end, start(generation_role), stops or (end.strip(),), go_start,
        system_in_first_user,
    )  # fmt: skip


FAMILIES = (
    _family("chatml", "<|im_start|>", "\n", "<|im_end|>\n"),
    _family("syllabus", "<|", "|>", "<|end|>"),
    _family("phi-3", "<|", "|>\n", "<|end|>\n"),
    _family("llama-3", "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>"),
    _family(
        "gemma",
        "<start_of_turn>",
        "\n",
        "<end_of_turn>\n",
        generation_role="model",
        rename={"assistant": "model"},
        system_in_first_user="\n\n",
    ),  # fmt: skip
)
"""Known chat template families. Syllabus's own template (finetune/base.py's
SYLLABUS_CHAT_TEMPLATE, carried by Syllabus models' HF exports) is `<|role|>content<|end|>`."""


# -- recognising a chat template ----------------------------------------------------------------


@dataclass(frozen=True)
class ChatFormat:
    family: str
    template: str
    """The Go template for the Modelfile."""
    stops: tuple[str, ...]
    default_system: str | None = None
    bos: str | None = None
    """The BOS text the Jinja template writes first, which Ollama's tokenizer adds instead."""


def render_jinja(chat_template: str, messages: Messages, bos_token: str, eos_token: str) -> str:
    """The chat template rendered as transformers renders it (same Jinja settings)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    return env.from_string(chat_template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
        raise_exception=raise_exception,
    )


def _default_system(family: TurnFamily, messages: Messages, rendered: str) -> str | None:
    """The system prompt this rendering of `messages` (which have none) carries, if the family
    with some system prompt explains it."""
    marked = family.render(messages, default_system=SYSTEM_MARK)
    before, _, after = marked.partition(SYSTEM_MARK)
    if rendered.startswith(before) and rendered.endswith(after):
        candidate = rendered[len(before) : len(rendered) - len(after)]
        if family.render(messages, default_system=candidate) == rendered:
            return candidate
    return None


def recognise_chat_template(
    chat_template: str, bos_token: str = "", eos_token: str = "", *, where: str = "the model"
) -> ChatFormat:
    """The known family that renders every probe conversation as `chat_template` does."""
    try:
        rendered = [render_jinja(chat_template, m, "", eos_token) for m in PROBES]
        with_bos = render_jinja(chat_template, PROBES[0], bos_token, eos_token)
    except Exception as exc:  # noqa: BLE001 (any Jinja error: the template cannot be probed)
        raise UserError(
            f"{where}: its chat template fails on a plain conversation ({exc}); give Ollama's "
            "TEMPLATE yourself (template_file) with its stop tokens"
        ) from None
    bos = None
    if bos_token and with_bos == bos_token + rendered[0]:
        bos = bos_token
    for family in FAMILIES:
        default = None
        matched = True
        for messages, text in zip(PROBES, rendered, strict=True):
            if family.render(messages, default) == text:
                continue
            has_system = any(m["role"] == "system" for m in messages)
            found = None if has_system else _default_system(family, messages, text)
            if found is None or (default is not None and found != default):
                matched = False
                break
            default = found
        if matched:
            return ChatFormat(family.name, family.go_template(default), family.stops, default, bos)
    names = ", ".join(f.name for f in FAMILIES)
    raise UserError(
        f"{where}: its chat template is none of the families Syllabus can write an Ollama "
        f"TEMPLATE for ({names}); it renders {PROBES[0]!r} as {rendered[0]!r}. Write the Go "
        "TEMPLATE yourself (https://github.com/ollama/ollama/blob/main/docs/template.md) and "
        "give it as template_file, with its stop tokens"
    )


# -- the directory ------------------------------------------------------------------------------


@dataclass
class OllamaExport:
    path: Path
    """The directory: the GGUF and the Modelfile (`ollama create NAME -f Modelfile` in it)."""
    gguf: Path
    modelfile: Path
    family: str
    """The recognised chat template family, or "given" for a template_file."""
    stops: list[str]
    default_system: str | None = None
    gguf_export: GGUFExport | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        system = f", default system prompt {self.default_system!r}" if self.default_system else ""
        return (
            f"ollama: {self.path} ({self.gguf.name}, {self.family} template{system}, stop "
            f"{', '.join(self.stops)})"
        )


def gguf_chat_template(gguf_file: Path) -> tuple[str | None, str, str, bool]:
    """The GGUF's tokenizer.chat_template, BOS and EOS texts, and whether llama.cpp (and so
    Ollama) adds BOS itself."""
    reader = gguf.GGUFReader(str(gguf_file))
    fields = reader.fields

    def value(key: str, default=None):
        return fields[key].contents() if key in fields else default

    tokens = value("tokenizer.ggml.tokens", [])
    bos_id, eos_id = value("tokenizer.ggml.bos_token_id"), value("tokenizer.ggml.eos_token_id")
    bos = tokens[bos_id] if bos_id is not None and bos_id < len(tokens) else ""
    eos = tokens[eos_id] if eos_id is not None and eos_id < len(tokens) else ""
    return value("tokenizer.chat_template"), bos, eos, bool(value("tokenizer.ggml.add_bos_token"))


def modelfile_text(gguf_name: str, template: str, stops: list[str]) -> str:
    if '"""' in template:
        raise UserError('the Ollama TEMPLATE cannot contain """ (the Modelfile quotes it so)')
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    return "\n".join(lines) + "\n"


def ollama_of_gguf(
    gguf_file: Path,
    out: Path,
    *,
    template_file: Path | None = None,
    stops: list[str] | None = None,
    gguf_export: GGUFExport | None = None,
    move: bool = False,
) -> OllamaExport:
    """`out`: `gguf_file` (copied, or moved with `move`) and a Modelfile for it. The TEMPLATE renders the GGUF's
    tokenizer.chat_template (recognised, see above) unless `template_file` gives one."""
    gguf_file, out = Path(gguf_file), Path(out)
    chat_template, bos, eos, adds_bos = gguf_chat_template(gguf_file)
    notes = []
    if template_file is not None:
        try:
            template = Path(template_file).read_text()
        except OSError as exc:
            raise UserError(f"template_file {template_file}: {exc.strerror}") from None
        family, default_system, stop_list = "given", None, list(stops or [])
    else:
        if not chat_template:
            raise UserError(
                f"{gguf_file}: the GGUF has no tokenizer.chat_template, so neither Ollama nor "
                "llama.cpp knows how to render a chat; export it from a model whose tokenizer "
                "has a chat template, or give an Ollama TEMPLATE (template_file)"
            )
        fmt = recognise_chat_template(chat_template, bos, eos, where=str(gguf_file))
        template, family, default_system = fmt.template, fmt.family, fmt.default_system
        stop_list = list(stops or fmt.stops)
        if fmt.bos and not adds_bos:
            template = fmt.bos + template  # Ollama adds no BOS here: the template writes it
        elif fmt.bos:
            notes.append(f"BOS {fmt.bos!r} is added by the tokenizer (add_bos_token), not written")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        target = partial / gguf_file.name
        (os.replace if move else shutil.copyfile)(gguf_file, target)
        (partial / "Modelfile").write_text(modelfile_text(target.name, template, stop_list))
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return OllamaExport(
        out, out / gguf_file.name, out / "Modelfile", family, stop_list, default_system,
        gguf_export, notes,
    )  # fmt: skip


def export_ollama(
    hf_dir: Path,
    out: Path,
    *,
    quant: str = "q4_k_m",
    tokenizer_gguf: Path | None = None,
    template_file: Path | None = None,
    stops: list[str] | None = None,
    name: str | None = None,
) -> OllamaExport:
    """An HF Llama directory as an Ollama directory: its GGUF in `quant` (tokenizer keys,
    chat template included, from `tokenizer_gguf` or the HF tokenizer), named
    `<name>-<quant>.gguf` (name: the directory's by default), and the Modelfile."""
    out = Path(out)
    staging = out.with_name(f".{out.name}.gguf-partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        written = gguf_of_hf(hf_dir, staging / f"{name or Path(hf_dir).name}-{quant}.gguf", quant,
                             tokenizer_gguf)  # fmt: skip
        result = ollama_of_gguf(
            written.path, out, template_file=template_file, stops=stops, move=True
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written.path = result.gguf
    result.gguf_export = written
    return result
