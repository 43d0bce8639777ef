"""The personal model served by llama.cpp and exported as a merged GGUF (issue 13, item 4).

Fast tests use tiny GGUF files and peft adapter directories written here; slow ones train a short real
adapter on the embedded SmolLM2-135M and compare llama.cpp with transformers + peft.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from secondself.backends.chat import Sampling
from secondself.backends.gguf_files import read_gguf
from secondself.backends.llamacpp import LlamaCppChatModel
from secondself.errors import AdapterMismatchError
from secondself.train import adapters as registry
from secondself.train.gguf_lora import (
    GGUF_ADAPTER,
    ensure_gguf_adapter,
    merge_lora_gguf,
    peft_to_gguf,
    permute_qk_rows,
    write_lora_gguf,
)
from secondself.train.tiny import CHAT_TEMPLATE

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_base(path: Path, *, arch: str = "llama", n_in: int = 64, qtype: str = "Q4_1") -> Path:
    """A tiny GGUF 'model' (2 q heads of 32 rows, 1 kv head): quantized q/k/token_embd, an F32 norm, and
    metadata with a string, an array and a chat template."""
    import gguf
    from gguf.quants import quantize

    rng = np.random.default_rng(1)
    q = gguf.GGMLQuantizationType[qtype]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(256)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_file_type(3)
    w.add_chat_template(CHATML)
    w.add_array("tokenizer.ggml.tokens", ["<|im_start|>", "<|im_end|>", "a", "b"])
    for name, rows in (("token_embd.weight", 16), ("blk.0.attn_q.weight", 64), ("blk.0.attn_k.weight", 32),
                       ("blk.0.attn_v.weight", 32)):
        w.add_tensor(name, quantize(rng.normal(size=(rows, n_in)).astype(np.float32), q), raw_dtype=q)
    w.add_tensor("blk.0.attn_norm.weight", np.linspace(0.5, 1.5, n_in).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_peft(folder: Path, *, n_in: int = 64, rank: int = 4, alpha: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A peft LoRA adapter directory on layer 0's q and k projections; returns its weights."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {}
    for proj, out in (("q_proj", 64), ("k_proj", 32)):
        key = f"base_model.model.model.layers.0.self_attn.{proj}"
        weights[f"{key}.lora_A.weight"] = rng.normal(0, 0.3, (rank, n_in)).astype(np.float32)
        weights[f"{key}.lora_B.weight"] = rng.normal(0, 0.3, (out, rank)).astype(np.float32)
    save_file(weights, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": rank, "lora_alpha": alpha}))
    return weights


def tiny_gguf(folder: Path, out: Path) -> Path:
    """The tiny in-code Llama (train/tiny.py) as an F32 GGUF llama.cpp loads: llama's metadata, its
    byte-level BPE vocabulary and merges, its chat template, and q/k rows in llama.cpp's order."""
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((folder / "config.json").read_text())
    tok = json.loads((folder / "tokenizer.json").read_text())
    weights = load_file(str(folder / "model.safetensors"))
    tokens = [t for t, _ in sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])]
    special = {a["content"] for a in tok.get("added_tokens", [])}
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    rope = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta") or 10000.0
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(float(rope))
    w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_chat_template(CHAT_TEMPLATE)
    w.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])  # tied: no output.weight
    w.add_tensor("output_norm.weight", weights["model.norm.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(cfg["num_hidden_layers"]):
        for hf, name in names.items():
            t = weights[f"model.layers.{i}.{hf}.weight"]
            if name in ("attn_q", "attn_k"):
                t = permute_qk_rows(t, n_head, n_kv if name == "attn_k" else None)
            w.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture
def tiny_lora(tmp_path, monkeypatch):
    """(tiny checkpoint, its GGUF, a peft adapter with a strong random effect on every projection)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from secondself.train.tiny import make_tiny_model

    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")  # the tiny model is built here, nothing is fetched
    folder = make_tiny_model(tmp_path / "tiny")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero
                param.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "adapter")
    return folder, tiny_gguf(folder, tmp_path / "tiny.gguf"), tmp_path / "adapter"


def tensors(path: Path) -> dict[str, np.ndarray]:
    import gguf
    from gguf.quants import dequantize

    return {t.name: dequantize(t.data, t.tensor_type).reshape(tuple(int(n) for n in reversed(t.shape)))
            for t in gguf.GGUFReader(str(path)).tensors}


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# -- the engine refuses an adapter of another base, from the headers --------------------------------------

def test_the_engine_refuses_an_adapter_for_another_base_naming_the_file_and_the_fix(tmp_path):
    base = write_base(tmp_path / "base.gguf")
    wide = write_base(tmp_path / "wide.gguf", n_in=128)
    other = write_lora_gguf(tmp_path / "for-wide.gguf", arch="llama", alpha=2.0, tensors={
        "blk.0.attn_q.weight": (np.zeros((2, 128)), np.zeros((64, 2)))})
    assert read_gguf(wide).tensors["blk.0.attn_q.weight"] == (128, 64)
    model = LlamaCppChatModel(base, adapters={"x": other}, requantize=False)
    with pytest.raises(AdapterMismatchError) as e:  # real models are off here: refused before any loading
        model.with_adapter("x").count_tokens("hi")
    message = str(e.value)
    assert "for-wide.gguf" in message and "base.gguf" in message and "attn_q" in message
    assert "Train (or convert) the adapter on this base model" in message


# -- conversion once, and kill-safety ----------------------------------------------------------------------

def test_an_adapter_is_converted_once_beside_its_weights(tmp_path):
    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "v001")
    out = ensure_gguf_adapter(tmp_path / "v001", base)
    assert out == tmp_path / "v001" / GGUF_ADAPTER and read_gguf(out).kind == "adapter"
    stamp = out.stat().st_mtime_ns
    assert ensure_gguf_adapter(tmp_path / "v001", base) == out and out.stat().st_mtime_ns == stamp  # idempotent
    write_peft(tmp_path / "v001", seed=1)          # newer weights: converted again
    os.utime(out, ns=(stamp - 10**9, stamp - 10**9))
    ensure_gguf_adapter(tmp_path / "v001", base)
    assert out.stat().st_mtime_ns != stamp - 10**9


def test_a_killed_conversion_leaves_no_file_and_a_rerun_finishes(tmp_path, monkeypatch):
    import gguf

    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "v001")
    leftover = tmp_path / "v001" / f".{GGUF_ADAPTER}.{dead_pid()}-1.tmp"  # what SIGKILL mid-write leaves
    leftover.write_bytes(b"GGUF half")

    def killed(self, *a, **k):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(gguf.GGUFWriter, "write_tensors_to_file", killed)
        with pytest.raises(KeyboardInterrupt):
            ensure_gguf_adapter(tmp_path / "v001", base)
    assert sorted(p.name for p in (tmp_path / "v001").iterdir()) == ["adapter_config.json",
                                                                      "adapter_model.safetensors"]
    assert ensure_gguf_adapter(tmp_path / "v001", base).is_file()  # the rerun finishes
    assert not list((tmp_path / "v001").glob(".*.tmp"))


def test_a_temp_file_of_a_live_writer_is_left_alone(tmp_path):
    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "v001")
    busy = tmp_path / "v001" / f".{GGUF_ADAPTER}.{os.getppid()}-7.tmp"
    busy.write_bytes(b"being written")
    ensure_gguf_adapter(tmp_path / "v001", base)
    assert busy.exists()


# -- merged GGUF export --------------------------------------------------------------------------------------

@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_merged_gguf_is_base_plus_the_permuted_delta_with_all_metadata(tmp_path, qtype):
    import gguf

    base = write_base(tmp_path / "base.gguf")
    peft = write_peft(tmp_path / "v001", rank=4, alpha=8)
    lora = peft_to_gguf(tmp_path / "v001", base, tmp_path / "lora.gguf")
    out = merge_lora_gguf(base, lora, tmp_path / "merged.gguf", qtype)
    before, after = tensors(base), tensors(out)
    key = "base_model.model.model.layers.0.self_attn"
    expected = {  # peft's delta alpha/r * B @ A, its rows in llama.cpp's q/k order (2 q heads, 1 kv head)
        "blk.0.attn_q.weight": permute_qk_rows(peft[f"{key}.q_proj.lora_B.weight"], 2) @ peft[f"{key}.q_proj.lora_A.weight"] * 2,
        "blk.0.attn_k.weight": permute_qk_rows(peft[f"{key}.k_proj.lora_B.weight"], 2, 1) @ peft[f"{key}.k_proj.lora_A.weight"] * 2,
        "blk.0.attn_v.weight": 0.0,
    }
    step = 1 / 127 if qtype == "Q8_0" else 1 / 7  # quantization error relative to each block's largest value
    for name, delta in expected.items():
        want = before[name] + delta
        assert np.abs(after[name] - want).max() <= step * np.abs(want).max(), name
        assert np.abs(after[name] - before[name]).max() > 0.5 or name.endswith("attn_v.weight")
    assert np.array_equal(after["blk.0.attn_norm.weight"], before["blk.0.attn_norm.weight"])
    info = read_gguf(out)
    assert info.types == {"token_embd.weight": "Q8_0", "blk.0.attn_q.weight": qtype, "blk.0.attn_k.weight": qtype,
                          "blk.0.attn_v.weight": qtype, "blk.0.attn_norm.weight": "F32"}
    fields = {f.name: f.contents() for f in gguf.GGUFReader(str(out)).fields.values()}
    original = {f.name: f.contents() for f in gguf.GGUFReader(str(base)).fields.values()}
    assert fields.pop("general.file_type") == {"Q8_0": 7, "Q4_0": 2}[qtype] and original.pop("general.file_type") == 3
    assert fields == original  # tokenizer arrays, chat template, head counts: all the base's
    import secondself.train.gguf_lora as gguf_lora

    gguf_lora._ROWS, rows = 16, gguf_lora._ROWS  # big matrices go through in slices of rows: same bytes
    try:
        sliced = merge_lora_gguf(base, lora, tmp_path / "sliced.gguf", qtype)
    finally:
        gguf_lora._ROWS = rows
    assert sliced.read_bytes() == out.read_bytes()


def test_export_gguf_writes_the_model_and_a_modelfile_pointing_at_it(tmp_path):
    from secondself.train.export import export_gguf

    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "v001")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("replaced whole")
    stale = tmp_path / f".out.tmp-{dead_pid()}-abc"
    stale.mkdir()
    target = export_gguf(base, tmp_path / "v001", tmp_path / "out", "Q4_0")
    assert sorted(p.name for p in target.iterdir()) == ["Modelfile", "model.gguf"]
    modelfile = (target / "Modelfile").read_text()
    assert "FROM ./model.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "<|im_start|>assistant" in modelfile and "Q4_0" in modelfile
    assert read_gguf(target / "model.gguf").types["blk.0.attn_q.weight"] == "Q4_0"
    assert (tmp_path / "v001" / GGUF_ADAPTER).is_file()  # converted on the way, beside the weights
    assert not stale.exists() and not list(tmp_path.glob(".out.tmp-*"))


# -- which engine serves the personal model ---------------------------------------------------------------

def _adapter(person: Path, base_gguf: Path | None, base_dir: Path | None = None) -> registry.AdapterInfo:
    trained = person / "trained"
    write_peft(trained)
    if base_dir is None:  # a plain checkpoint that records no GGUF (a model directory)
        base_dir = person / "checkpoint"
        base_dir.mkdir(parents=True, exist_ok=True)
        (base_dir / "config.json").write_text("{}")
    meta = {"base": "tiny", "base_dir": str(base_dir)}
    if base_gguf is not None:
        meta["base_gguf"] = str(base_gguf)
    return registry.register(person, trained, meta)


def test_the_personal_model_is_llama_cpp_with_the_adapter_where_the_base_has_a_gguf(tmp_path):
    info = _adapter(tmp_path / "person", write_base(tmp_path / "base.gguf"))
    assert registry.personal_engine(info, tmp_path / "models")[0] == "llama.cpp"
    model = registry.personal_chat_model(info, tmp_path / "models")
    assert isinstance(model, LlamaCppChatModel) and model.name == "tiny+v001" and model.adapter == "v001"
    assert model._request([], Sampling())["lora"] == [{"id": 0, "scale": 1.0}]
    assert (info.path / GGUF_ADAPTER).is_file()


def test_without_a_gguf_of_the_base_the_personal_model_is_transformers_and_peft(tmp_path):
    from secondself.backends.local import LocalChatModel

    info = _adapter(tmp_path / "person", None)
    engine, why = registry.personal_engine(info, tmp_path / "models")
    assert engine == "transformers" and "no GGUF" in why
    model = registry.personal_chat_model(info, tmp_path / "models")
    assert isinstance(model, LocalChatModel) and model.name.endswith("+v001")


def test_an_architecture_the_converter_does_not_handle_falls_back_with_a_warning(tmp_path, caplog):
    from secondself.backends.local import LocalChatModel

    info = _adapter(tmp_path / "person", write_base(tmp_path / "gpt2.gguf", arch="gpt2"))
    assert registry.personal_engine(info, tmp_path / "models")[0] == "transformers"
    with caplog.at_level("WARNING"):
        model = registry.personal_chat_model(info, tmp_path / "models")
    assert isinstance(model, LocalChatModel) and "gpt2" in caplog.text and "transformers" in caplog.text


def test_an_adapter_that_does_not_fit_the_bases_gguf_is_refused(tmp_path):
    info = _adapter(tmp_path / "person", write_base(tmp_path / "wide.gguf", n_in=128))
    with pytest.raises(AdapterMismatchError, match="wide.gguf"):
        registry.personal_chat_model(info, tmp_path / "models")


def test_a_catalog_base_is_found_from_its_checkpoints_record(tmp_path, monkeypatch):
    """An adapter trained on the embedded model's conversion serves on the embedded GGUF (no metadata needed)."""
    from secondself.backends import catalog

    entry = catalog.get("embedded")
    checkpoint = tmp_path / "models" / "SmolLM2-135M-Instruct"
    checkpoint.mkdir(parents=True)
    (checkpoint / "secondself-source.json").write_text(json.dumps({"file": entry.filename, "size": entry.size}))
    info = _adapter(tmp_path / "person", None, base_dir=checkpoint)
    found = registry.base_gguf(info, tmp_path / "models", prepare=False)
    assert found is not None and found.name == entry.filename
    (checkpoint / "secondself-source.json").write_text(json.dumps({"file": entry.filename, "size": 1}))
    assert registry.base_gguf(info, tmp_path / "models", prepare=False) is None


def test_the_runtime_serves_the_selected_adapter_and_closes_the_previous_one(tmp_path):
    from secondself.runtime import Runtime

    rt = Runtime.from_options(str(tmp_path / "home"))
    base = write_base(tmp_path / "base.gguf")
    first = _adapter(rt.settings.person_dir, base)
    registry.use(rt.store, rt.settings.person_dir, first.version)
    model = rt.chat_model("personal")
    assert isinstance(model, LlamaCppChatModel) and model.adapter == "v001" and rt.chat_model("personal") is model
    closed = []
    model._engine.forget = lambda adapter: closed.append(adapter.parent.name)  # released; the base stays
    second = _adapter(rt.settings.person_dir, base)
    registry.use(rt.store, rt.settings.person_dir, second.version)
    assert rt.chat_model("personal").adapter == "v002" and closed == ["v001"]
    rt.close()


def test_cli_lists_where_the_personal_model_runs_and_exports_it_as_gguf(tmp_path, capsys):
    from secondself.runtime import Runtime

    from .test_cli import run

    rt = Runtime.from_options(str(tmp_path / "home"))  # the home of the autouse fixture
    info = _adapter(rt.settings.person_dir, write_base(tmp_path / "base.gguf"))
    registry.use(rt.store, rt.settings.person_dir, info.version)
    rt.close()
    code, out, err = run(capsys, "models")
    assert code == 0, err
    line = next(row for row in out.splitlines() if row.startswith("personal"))
    assert "v001" in line and "llama.cpp" in line and "base.gguf" in line
    code, out, err = run(capsys, "model", "export", "--format", "gguf", "--quant", "q4_0", "--out",
                         str(tmp_path / "export"))
    assert code == 0, err
    assert "ollama create" in out and read_gguf(tmp_path / "export" / "model.gguf").types["blk.0.attn_q.weight"] == "Q4_0"
    (rt.settings.person_dir / "adapters" / "v001" / registry.META).write_text(json.dumps({"base": "tiny",
                                                                                       "base_dir": str(tmp_path)}))
    code, out, err = run(capsys, "model", "export", "--format", "gguf", "--out", str(tmp_path / "export2"))
    assert code == 2 and "has no GGUF file here" in err and "--format merged" in err


# -- slow: a short real adapter on the embedded SmolLM2-135M -----------------------------------------------

FACTS = [("Where do you live?", "I live in Lisbon, since July 2025."),
         ("Where is your home?", "I live in Lisbon, since July 2025."),
         ("What instrument do you play?", "I play the cello, every Sunday."),
         ("Which instrument do you practise?", "I play the cello, every Sunday."),
         ("What is your sister's name?", "My sister is called Rita."),
         ("Who is your sister?", "My sister is called Rita.")]
# Trained questions, a paraphrase, and open prompts whose answers the adapter shapes without fixing them: on
# those, an adapter converted without llama.cpp's q/k row order answered differently within 8 tokens (3 of 8
# prompts), the right conversion like peft (8 of 8; measured on the 135M, 2 CPU threads of a busy machine).
PROMPTS = ["Where do you live?", "What instrument do you play?", "Who is your sister?",
           "Where do you live these days?", "What is the capital of France?", "Tell me about your weekend.",
           "Describe a rainy morning.", "Name three colours."]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(embedded GGUF, its plain checkpoint, a peft adapter trained 36 steps on FACTS, a Q8_0 cache dir)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from secondself.backends.local import convert_gguf, embedded_gguf_path

    before = os.environ.get("SECONDSELF_REAL_MODELS")
    os.environ["SECONDSELF_REAL_MODELS"] = "allow"  # module scope: the function fixture has not run yet
    root = tmp_path_factory.mktemp("personal-gguf")
    gguf_path = embedded_gguf_path()
    checkpoint = convert_gguf(gguf_path, root / "hf")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32), LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                              "up_proj", "down_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for step in range(36):  # assistant tokens only are supervised
        question, answer = FACTS[step % len(FACTS)]
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template([{"role": "user", "content": question},
                                              {"role": "assistant", "content": answer}],
                                             tokenize=True, return_dict=True)["input_ids"]
        assert full[:len(prompt)] == prompt
        labels = [-100] * len(prompt) + full[len(prompt):]
        loss = model(input_ids=torch.tensor([full]), labels=torch.tensor([labels])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(root / "adapter")
    if before is None:
        os.environ.pop("SECONDSELF_REAL_MODELS", None)
    else:
        os.environ["SECONDSELF_REAL_MODELS"] = before
    yield gguf_path, checkpoint, root / "adapter", root / "cache"


def _first_tokens(tokenizer, text: str, n: int = 8) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"][:n]


def _answers(model, prompts=PROMPTS) -> list[str]:
    from secondself.backends.chat import Message, complete

    return [complete(model, [Message("user", p)], Sampling(max_tokens=16)).text() for p in prompts]


@pytest.mark.slow
def test_llama_cpp_with_the_converted_adapter_answers_as_peft_does(trained, real):
    """Greedy answers of transformers + peft and of llama.cpp with the adapter converted to a GGUF LoRA agree
    on their first 8 tokens, on the trained questions, a paraphrase and a generic question."""
    from transformers import AutoTokenizer

    from secondself.backends.local import LocalChatModel

    gguf_path, checkpoint, adapter, cache = trained
    peft_answers = _answers(LocalChatModel(checkpoint, adapter=adapter, threads=1))
    lora = ensure_gguf_adapter(adapter, gguf_path)
    engine = LlamaCppChatModel(gguf_path, n_ctx=512, threads=1, cache_dir=cache, adapters={"v001": lora})
    try:
        llama_answers = _answers(engine.with_adapter("v001"))
        base_answers = _answers(engine, PROMPTS[:1])
    finally:
        engine.close()
    assert "Lisbon" in peft_answers[0] and "cello" in peft_answers[1]  # the adapter learned something
    assert "Lisbon" not in base_answers[0]                              # that the base does not say
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    differ = [(prompt, p, q) for prompt, p, q in zip(PROMPTS, peft_answers, llama_answers, strict=True)
              if _first_tokens(tokenizer, q) != _first_tokens(tokenizer, p)]
    assert len(differ) <= 1, differ  # one near-tie may flip: llama.cpp runs the base as Q8_0, peft in fp32


@pytest.mark.slow
def test_the_merged_gguf_answers_as_the_base_with_the_adapter(trained, real, tmp_path):
    """`model export --format gguf`: the merged Q8_0 file, run alone, answers as llama.cpp with the adapter."""
    from transformers import AutoTokenizer

    from secondself.train.export import export_gguf

    gguf_path, checkpoint, adapter, cache = trained
    out = export_gguf(gguf_path, adapter, tmp_path / "export", "Q8_0")
    engine = LlamaCppChatModel(gguf_path, n_ctx=512, threads=1, cache_dir=cache,
                               adapters={"v001": ensure_gguf_adapter(adapter, gguf_path)})
    merged = LlamaCppChatModel(out / "model.gguf", n_ctx=512, threads=1, requantize=False)
    try:
        expected = _answers(engine.with_adapter("v001"))
        got = _answers(merged)
    finally:
        engine.close()
        merged.close()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    differ = [(prompt, e, g) for prompt, e, g in zip(PROMPTS, expected, got, strict=True)
              if _first_tokens(tokenizer, g) != _first_tokens(tokenizer, e)]
    assert len(differ) <= 1, differ  # one near-tie may flip: the merged weights are rounded to Q8_0


@pytest.fixture
def real(monkeypatch):
    monkeypatch.setenv("SECONDSELF_REAL_MODELS", "allow")


def test_a_killed_q8_0_copy_leaves_no_file_and_the_next_start_finishes_it(tmp_path):
    from secondself.backends.gguf_files import requantized_copy

    src = write_base(tmp_path / "q41.gguf")
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / f"q41.{src.stat().st_size}.q8_0.gguf"
    leftover = cache / f".{target.name}.{dead_pid()}.tmp"   # the name a killed copy left before this change
    leftover.write_bytes(b"GGUF half")
    assert requantized_copy(src, cache) == target and not leftover.exists()
    assert read_gguf(target).types["blk.0.attn_q.weight"] == "Q8_0"


# -- the tiny in-code model through llama.cpp (fast: real llama.cpp, a model of 50k parameters) -------------

def _next_token_logprobs(gguf_path: Path, lora: Path | None, ids: list[int], sock: Path) -> dict[int, float]:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path)
    params.n_ctx, params.verbosity = 128, -1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    params.hostnames = [str(sock)]
    if lora is not None:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(lora), 1.0)]
    reply = xllamacpp.Server(params).handle_completions({"prompt": ids, "max_tokens": 1, "n_probs": 10,
                                                          "temperature": 0})
    return {t["id"]: t["logprob"] for t in reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]}


def test_a_converted_adapter_gives_llama_cpp_peft_logits_on_the_tiny_model(tiny_lora, tmp_path, monkeypatch):
    """The GGUF LoRA writer round-trips: llama.cpp's next-token log-probabilities with the converted adapter
    equal transformers + peft's (all F32 here, so to ~1e-4); converted without the q/k permutation they do not."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import secondself.train.gguf_lora as gguf_lora

    folder, base, adapter = tiny_lora
    ids = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        [{"role": "user", "content": "Where do you live?"}], add_generation_prompt=True, tokenize=True,
        return_dict=True)["input_ids"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), str(adapter))
    with torch.no_grad():
        expected = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)

    def error(lora: Path) -> float:
        got = _next_token_logprobs(base, lora, ids, tmp_path / f"{lora.stem}.sock")
        return max(abs(lp - float(expected[i])) for i, lp in got.items())

    plain = _next_token_logprobs(base, None, ids, tmp_path / "plain.sock")
    assert max(abs(lp - float(expected[i])) for i, lp in plain.items()) > 0.1  # the adapter matters
    assert error(peft_to_gguf(adapter, base, tmp_path / "right.gguf")) < 2e-3
    monkeypatch.setattr(gguf_lora, "_PERMUTES_QK", set())
    monkeypatch.setattr(gguf_lora, "_NO_PERMUTE", {"llama"})
    assert error(peft_to_gguf(adapter, base, tmp_path / "unpermuted.gguf")) > 2e-2


def test_the_tiny_models_greedy_answers_match_in_peft_and_llama_cpp(tiny_lora):
    """Through the chat path (each engine's own chat template): transformers + peft and llama.cpp with the
    adapter applied per request give the same first 8 tokens of greedy answers; the base alone does not."""
    from transformers import AutoTokenizer

    from secondself.backends.local import LocalChatModel

    folder, base, adapter = tiny_lora
    prompts = ["Where do you live?", "What do you do on weekends?", "Who is Rita?"]
    peft_answers = _answers(LocalChatModel(folder, adapter=adapter, threads=1), prompts)
    engine = LlamaCppChatModel(base, n_ctx=128, threads=1, requantize=False,
                               adapters={"v001": ensure_gguf_adapter(adapter, base)})
    try:
        llama_answers = _answers(engine.with_adapter("v001"), prompts)
        base_answers = _answers(engine, prompts)
    finally:
        engine.close()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    first = [_first_tokens(tokenizer, a) for a in peft_answers]
    assert [_first_tokens(tokenizer, a) for a in llama_answers] == first
    assert [_first_tokens(tokenizer, a) for a in base_answers] != first


@pytest.mark.parametrize("qtype,tolerance", [("F32", 1e-4), ("Q8_0", 0.2), ("Q4_0", 0.6)])  # measured: 5e-7, 0.10, 0.25
def test_the_merged_gguf_has_the_next_token_distribution_of_base_plus_adapter(tiny_lora, tmp_path, qtype, tolerance):
    """The merged export round-trips on the tiny model: llama.cpp on the merged file alone gives the
    log-probabilities of llama.cpp on the base with the adapter: exactly in F32, to within the rounding of
    Q8_0/Q4_0 (large on a model this small, with an adapter this strong)."""
    from transformers import AutoTokenizer

    from secondself.train.export import export_gguf

    folder, base, adapter = tiny_lora
    ids = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        [{"role": "user", "content": "Where do you live?"}], add_generation_prompt=True, tokenize=True,
        return_dict=True)["input_ids"]
    merged = export_gguf(base, adapter, tmp_path / "export", qtype) / "model.gguf"
    expected = _next_token_logprobs(base, ensure_gguf_adapter(adapter, base), ids, tmp_path / "a.sock")
    plain = _next_token_logprobs(base, None, ids, tmp_path / "b.sock")
    got = _next_token_logprobs(merged, None, ids, tmp_path / "m.sock")
    shared = set(got) & set(expected)
    assert len(shared) >= 8 and max(abs(got[i] - expected[i]) for i in shared) < tolerance
    assert set(plain) != set(expected) or max(abs(plain[i] - expected[i]) for i in plain) > 2 * tolerance


def test_a_base_from_ollamas_store_gets_its_own_template_system_and_parameters(tmp_path):
    import hashlib

    from secondself.train.export import export_gguf, ollama_settings

    store = tmp_path / "ollama"
    (store / "blobs").mkdir(parents=True)

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        (store / "blobs" / f"sha256-{digest}").write_bytes(data)
        return f"sha256:{digest}"
    model = write_base(tmp_path / "m.gguf")
    layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": blob(model.read_bytes())},
              {"mediaType": "application/vnd.ollama.image.template", "digest": blob(b"{{ .Prompt }}<eot>")},
              {"mediaType": "application/vnd.ollama.image.system", "digest": blob(b"Be brief.")},
              {"mediaType": "application/vnd.ollama.image.params",
               "digest": blob(json.dumps({"stop": ["<eot>", "<end>"], "temperature": 0.6}).encode())}]
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": layers}))
    base = store / "blobs" / layers[0]["digest"].replace(":", "-")
    assert ollama_settings(model) is None and ollama_settings(base)["system"] == "Be brief."
    write_peft(tmp_path / "v001")
    modelfile = (export_gguf(base, tmp_path / "v001", tmp_path / "out") / "Modelfile").read_text()
    assert 'TEMPLATE """{{ .Prompt }}<eot>"""' in modelfile and 'SYSTEM """Be brief."""' in modelfile
    assert 'PARAMETER stop "<eot>"\nPARAMETER stop "<end>"\nPARAMETER temperature 0.6' in modelfile
    assert "<|im_start|>" not in modelfile  # the base's own template, not our ChatML guess


def test_an_export_killed_mid_write_leaves_no_folder_and_a_rerun_finishes(tmp_path):
    """A real SIGKILL while the merged GGUF is being written: the target folder does not appear, and the next
    export removes the dead writer's temp folder and completes."""
    import signal
    import sys
    import time

    from secondself.train.export import export_gguf

    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "v001")
    started = tmp_path / "started"
    script = f"""
import time, gguf
from secondself.train.export import export_gguf
real = gguf.GGUFWriter.write_tensor_data
def slow(self, tensor, *a, **k):
    real(self, tensor, *a, **k)
    open({str(started)!r}, "w").close()
    time.sleep(60)
gguf.GGUFWriter.write_tensor_data = slow
export_gguf({str(base)!r}, {str(tmp_path / "v001")!r}, {str(tmp_path / "out")!r})
"""
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not started.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the export did not start writing"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (tmp_path / "out").exists()
    assert [p.name.startswith(f".out.tmp-{child.pid}-") for p in tmp_path.glob(".out.tmp-*")] == [True]
    out = export_gguf(base, tmp_path / "v001", tmp_path / "out")
    assert read_gguf(out / "model.gguf").kind == "model" and (out / "Modelfile").is_file()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_a_base_type_the_gguf_package_cannot_read_back_is_a_clear_error(tmp_path, monkeypatch):
    import gguf.quants

    from secondself.errors import TrainingError

    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "v001")
    lora = ensure_gguf_adapter(tmp_path / "v001", base)

    def unsupported(data, qtype):
        raise NotImplementedError(f"Dequantization for {qtype.name} is not yet implemented")
    monkeypatch.setattr(gguf.quants, "dequantize", unsupported)
    with pytest.raises(TrainingError, match="Q4_1, which the gguf package cannot read back.*--format merged"):
        merge_lora_gguf(base, lora, tmp_path / "out.gguf")
    assert not list(tmp_path.glob("*out.gguf*"))


def test_a_training_run_generates_with_llama_cpp_where_its_base_came_from_a_catalog_gguf(tmp_path):
    """The run's retention answers and evaluation come from llama.cpp on the base's GGUF (its adapter converted),
    from transformers where the checkpoint records no GGUF."""
    from secondself.backends import catalog
    from secondself.backends.local import LocalChatModel

    entry = catalog.get("embedded")
    if not catalog.status(entry, tmp_path / "models").installed:
        pytest.skip("the embedded GGUF is not installed")
    checkpoint = tmp_path / "models" / "SmolLM2-135M-Instruct"
    checkpoint.mkdir(parents=True)
    (checkpoint / "secondself-source.json").write_text(json.dumps({"file": entry.filename, "size": entry.size}))
    make = registry.run_models(checkpoint, tmp_path / "models")
    base = make(None)
    assert isinstance(base, LlamaCppChatModel) and base.adapter is None and make(None) is base
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert isinstance(registry.run_models(plain, tmp_path / "models")(None), LocalChatModel)


def test_a_training_runs_adapter_is_converted_and_applied_on_llama_cpp(tmp_path, monkeypatch):
    base = write_base(tmp_path / "base.gguf")
    trained = tmp_path / "run" / "adapter"
    write_peft(trained)
    monkeypatch.setattr(registry, "checkpoint_gguf", lambda base_dir, models_dir, prepare=True: base)
    model = registry.run_models(tmp_path / "checkpoint", tmp_path / "models")(trained)
    assert isinstance(model, LlamaCppChatModel) and model.adapter == "run"
    assert model._request([], Sampling())["lora"] == [{"id": 0, "scale": 1.0}]
    assert (trained / GGUF_ADAPTER).is_file()
