"""The Ollama directory: its Modelfile's TEMPLATE, executed by Go's own text/template on the
data Ollama passes, renders conversations exactly as transformers' apply_chat_template renders
the model's chat template; llama.cpp (llama-cpp-python's chat handler, as its server uses it)
renders them the same from the exported GGUF. The Ollama binary does not install here."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from syllabus.errors import UserError
from syllabus.export.ollama import (
    PROBES,
    export_ollama,
    gguf_chat_template,
    ollama_of_gguf,
    recognise_chat_template,
)
from syllabus.finetune.base import SYLLABUS_CHAT_TEMPLATE

GO = shutil.which("go")
needs_go = pytest.mark.skipif(
    GO is None, reason="Go is not installed (Debian: apt-get install golang-go; `make test` does)"
)
RENDER_GO = Path(__file__).with_name("render_template.go")

TWO_TURNS = PROBES[0]
"""system, user, assistant, user; rendered with the generation prompt."""

PHI3 = (
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + "
    "message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set prefix = "
    "messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}"
    "{% set prefix = '' %}{% set loop_messages = messages %}{% endif %}{% for message in "
    "loop_messages %}{% set role = 'model' if message['role'] == 'assistant' else "
    "message['role'] %}{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + "
    "message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<start_of_turn>model\n' }}{% endif %}"
)
"""Phi-3-mini's and Gemma 3's chat templates (Gemma puts the system prompt in the first user
turn); the others come from llama-cpp-python (ChatML, Llama-3), Syllabus and SmolLM2's GGUF."""


def ollama_data(messages: list[dict]) -> dict:
    """What Ollama's template.Execute passes a .Messages template: the system messages joined,
    and the messages with consecutive same-role ones merged (its `collate`)."""
    collated: list[dict] = []
    for message in messages:
        if collated and collated[-1]["Role"] == message["role"]:
            collated[-1]["Content"] += "\n\n" + message["content"]
        else:
            collated.append({"Role": message["role"], "Content": message["content"]})
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system, "Messages": collated, "Response": ""}


def render_go(cases: list[tuple[str, list[list[dict]]]], tmp_path: Path) -> list[list[str]]:
    """Each (Go template, conversations) rendered by Go's text/template (one `go run`)."""
    data = [{"template": t, "data": [ollama_data(m) for m in convs]} for t, convs in cases]
    path = tmp_path / f"go-cases-{len(list(tmp_path.glob('go-cases-*')))}.json"
    path.write_text(json.dumps(data))
    done = subprocess.run(
        [GO, "run", str(RENDER_GO), str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def hf_render(template: str, messages: list[dict], bos: str, eos: str) -> str:
    """transformers' apply_chat_template of `template` (on a tokenizer with these BOS/EOS)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE()), bos_token=bos, eos_token=eos
    )
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=True
    )


@needs_go
def test_each_family_in_go_renders_as_transformers_renders_its_chat_template(
    smollm2_path, tmp_path
):
    from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, LLAMA3_INSTRUCT_CHAT_TEMPLATE

    smollm2_template = gguf_chat_template(smollm2_path)[0]
    templates = {
        "smollm2": (smollm2_template, "chatml", "<|im_start|>", "<|im_end|>"),
        "chatml": (CHATML_CHAT_TEMPLATE, "chatml", "<s>", "<|im_end|>"),
        "syllabus": (SYLLABUS_CHAT_TEMPLATE, "syllabus", "<|endoftext|>", "<|endoftext|>"),
        "phi-3": (PHI3, "phi-3", "<s>", "<|endoftext|>"),
        "llama-3": (LLAMA3_INSTRUCT_CHAT_TEMPLATE, "llama-3", "<|begin_of_text|>", "<|eot_id|>"),
        "gemma": (GEMMA, "gemma", "<bos>", "<eos>"),
    }
    formats = {
        name: recognise_chat_template(template, bos, eos)
        for name, (template, _, bos, eos) in templates.items()
    }
    assert {name: f.family for name, f in formats.items()} == {
        name: family for name, (_, family, _, _) in templates.items()
    }
    assert formats["smollm2"].default_system == (
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    )
    assert formats["llama-3"].bos == "<|begin_of_text|>" and formats["chatml"].bos is None
    rendered = render_go([(f.template, PROBES) for f in formats.values()], tmp_path)
    for (name, (template, _, bos, eos)), fmt, texts in zip(
        templates.items(), formats.values(), rendered, strict=True
    ):
        for messages, text in zip(PROBES, texts, strict=True):
            expected = hf_render(template, messages, bos, eos)
            # BOS: Ollama's tokenizer adds it (add_bos_token), the TEMPLATE does not write it.
            assert (fmt.bos or "") + text == expected, (name, messages)
    assert formats["smollm2"].stops == ("<|im_end|>",)
    assert formats["syllabus"].stops == ("<|end|>",)
    assert formats["llama-3"].stops == ("<|eot_id|>",)


def test_a_chat_template_of_no_known_family_is_refused_with_what_to_do():
    from llama_cpp.llama_chat_format import MISTRAL_INSTRUCT_CHAT_TEMPLATE

    alpaca = (
        "{% for message in messages %}{% if message['role'] == 'user' %}### Instruction:\n"
        "{{ message['content'] }}\n\n{% elif message['role'] == 'assistant' %}### Response:\n"
        "{{ message['content'] }}\n\n{% else %}{{ message['content'] }}\n\n{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}### Response:\n{% endif %}"
    )
    with pytest.raises(UserError, match="none of the families.*give it as template_file"):
        recognise_chat_template(alpaca, where="alpaca.gguf")
    # Mistral's template refuses a system message: it cannot be probed.
    with pytest.raises(UserError, match="fails on a plain conversation.*template_file"):
        recognise_chat_template(MISTRAL_INSTRUCT_CHAT_TEMPLATE, "<s>", "</s>")


def assert_three_renderings_agree(out, hf_tokenizer, tmp_path: Path) -> None:
    """transformers (apply_chat_template), llama.cpp (the chat handler llama-cpp-python's
    server uses for a GGUF with a chat template, "chat_template.default", built from the
    directory's GGUF as Llama builds it) and Ollama (the Modelfile's TEMPLATE run by Go's
    text/template) render the two-turn conversation identically; llama.cpp's token ids for it
    are transformers'."""
    from llama_cpp import llama_chat_format

    from tests.export.conftest import llama_cpp

    expected = hf_tokenizer.apply_chat_template(
        TWO_TURNS, tokenize=False, add_generation_prompt=True
    )
    llm = llama_cpp(out.gguf, vocab_only=True)
    try:
        assert llm.chat_format == "chat_template.default"
        assert llm.metadata["tokenizer.chat_template"] == hf_tokenizer.chat_template
        eos, bos = llm.token_eos(), llm.token_bos()
        formatter = llama_chat_format.Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        )
        llama_cpp_prompt = formatter(messages=TWO_TURNS).prompt
        ids = llm.tokenize(llama_cpp_prompt.encode(), add_bos=False, special=True)
    finally:
        llm.close()
    assert llama_cpp_prompt == expected
    assert ids == hf_tokenizer(expected, add_special_tokens=False)["input_ids"]
    modelfile = out.modelfile.read_text()
    template = modelfile.split('TEMPLATE """', 1)[1].rsplit('"""', 1)[0]
    assert render_go([(template, [TWO_TURNS, TWO_TURNS[1:]])], tmp_path)[0] == [
        expected,
        hf_tokenizer.apply_chat_template(TWO_TURNS[1:], tokenize=False, add_generation_prompt=True),
    ]


@pytest.mark.slow
@needs_go
def test_a_syllabus_model_as_an_ollama_directory(tiny_hf, tmp_path):
    """From the HF directory (Syllabus's chat template in its tokenizer) to the directory."""
    from transformers import AutoTokenizer

    out = export_ollama(tiny_hf, tmp_path / "tiny-ollama", quant="q4_0", name="tiny")
    assert sorted(p.name for p in out.path.iterdir()) == ["Modelfile", "tiny-q4_0.gguf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-ollama"]  # no leftovers
    modelfile = out.modelfile.read_text()
    assert modelfile.startswith('FROM ./tiny-q4_0.gguf\nTEMPLATE """')
    assert modelfile.endswith('"""\nPARAMETER stop "<|end|>"\n')
    assert out.family == "syllabus" and out.default_system is None
    assert out.gguf_export.quant == "q4_0" and out.gguf_export.path == out.gguf
    hf_tokenizer = AutoTokenizer.from_pretrained(tiny_hf)
    expected = hf_tokenizer.apply_chat_template(
        TWO_TURNS, tokenize=False, add_generation_prompt=True
    )
    assert expected.startswith("<|system|>You answer") and expected.endswith("<|assistant|>")
    assert_three_renderings_agree(out, hf_tokenizer, tmp_path)


@needs_go
def test_smollm2_as_an_ollama_directory(smol, tmp_path):
    """SmolLM2's q4_k_m GGUF (its packaged tokenizer keys and ChatML template with a default
    system prompt) around which the directory is written."""
    out = ollama_of_gguf(smol["exports"]["q4_k_m"].path, tmp_path / "smollm2-ollama")
    assert sorted(p.name for p in out.path.iterdir()) == ["Modelfile", "smollm2-q4_k_m.gguf"]
    modelfile = out.modelfile.read_text()
    assert modelfile.startswith('FROM ./smollm2-q4_k_m.gguf\nTEMPLATE """')
    assert modelfile.endswith('"""\nPARAMETER stop "<|im_end|>"\n')
    assert out.family == "chatml" and out.default_system.startswith("You are a helpful AI")
    assert_three_renderings_agree(out, smol["tokenizer"], tmp_path)


@pytest.mark.slow
def test_a_given_template_is_used_and_a_gguf_without_a_chat_template_is_refused(
    tiny_model, tiny_keys, tiny_exports, tmp_path
):
    from syllabus.export.gguf import gguf_of_model

    given = tmp_path / "template.txt"
    given.write_text("{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant: ")
    out = ollama_of_gguf(tiny_exports["q8_0"].path, tmp_path / "given", template_file=given,
                         stops=["\nuser:"])  # fmt: skip
    assert out.family == "given"
    assert out.modelfile.read_text() == (
        f'FROM ./tiny-q8_0.gguf\nTEMPLATE """{given.read_text()}"""\nPARAMETER stop "\\nuser:"\n'
    )

    def without_template(writer) -> None:
        tiny_keys(writer)
        del writer.kv_data[0]["tokenizer.chat_template"]

    bare = gguf_of_model(tiny_model, tmp_path / "bare.gguf", "f16", "bare", without_template)
    with pytest.raises(UserError, match="no tokenizer.chat_template.*template_file"):
        ollama_of_gguf(bare.path, tmp_path / "bare-ollama")
    assert not (tmp_path / "bare-ollama").exists()
