"""Registration, save/load with trust_remote_code in a fresh process, export to (and import from) native NanoChat."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, NanoChatForCausalLM
from transformers import PreTrainedTokenizerFast

import hansard_hf
from hansard_hf import HansardGPTConfig, HansardGPTForCausalLM, HansardGPTModel, export_to_nanochat
from hansard_hf.hub import max_logit_difference, to_nanochat_config
from conftest import offline_env, randomized, tiny_config


def run_python(code: str, *args) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (offline, same HF_HOME) and fail loudly on error."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                            text=True, env=offline_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def save_tiny_tokenizer(folder):
    words = ["<|bos|>", "the", "house", "order", "minister", "hon.", "member", "<unk>"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", unk_token="<unk>").save_pretrained(folder)


def test_import_registers_auto_classes(tiny_model, tmp_path):
    config = AutoConfig.for_model("hansard_gpt", depth=2, head_dim=16, vocab_size=97)
    assert isinstance(config, HansardGPTConfig)
    assert type(AutoModelForCausalLM.from_config(config)) is HansardGPTForCausalLM
    assert type(AutoModel.from_config(config)) is HansardGPTModel
    tiny_model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is HansardGPTForCausalLM  # the installed package wins over the folder's copy


def test_save_pretrained_ships_code_and_auto_map(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_hansard_gpt.HansardGPTConfig",
        "AutoModel": "modeling_hansard_gpt.HansardGPTModel",
        "AutoModelForCausalLM": "modeling_hansard_gpt.HansardGPTForCausalLM",
    }
    assert {"configuration_hansard_gpt.py", "modeling_hansard_gpt.py", "model.safetensors"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_fresh_process_loads_with_trust_remote_code(tiny_model, input_ids, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    greedy = tiny_model.generate(input_ids[:, :5], max_new_tokens=10, do_sample=False, use_cache=False)
    torch.save({"ids": input_ids, "logits": tiny_model(input_ids).logits, "greedy": greedy,
                "hidden": tiny_model.model(input_ids).last_hidden_state}, tmp_path / "expected.pt")
    run_python(
        """
        import sys, torch
        from transformers import AutoModel, AutoModelForCausalLM
        folder, expected = sys.argv[1], torch.load(sys.argv[2])
        try:
            AutoModelForCausalLM.from_pretrained(folder)
            raise SystemExit("loaded custom code without trust_remote_code")
        except ValueError as error:
            assert "trust_remote_code" in str(error)
        lm = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True)
        assert type(lm).__module__.startswith("transformers_modules"), type(lm).__module__
        assert type(base).__name__ == "HansardGPTModel", type(base)
        assert "hansard_hf" not in sys.modules
        with torch.no_grad():
            assert (lm(expected["ids"]).logits - expected["logits"]).abs().max() == 0
            assert (base(expected["ids"]).last_hidden_state - expected["hidden"]).abs().max() == 0
            # rotary frequencies are recomputed after meta-device loading
            inv = lm.model.rotary_emb.inv_freq
            assert torch.allclose(inv, 1.0 / 10000 ** (torch.arange(0, 16, 2).float() / 16))
        prompt = expected["ids"][:, :5]
        cached = lm.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True)
        assert torch.equal(cached, lm.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=False))
        assert torch.equal(cached, expected["greedy"])
        """,
        tmp_path / "ckpt",
        tmp_path / "expected.pt",
    )


FROZEN = Path(__file__).parent / "fixtures" / "hansard_gpt_2026-12-01"


def test_a_checkpoint_shipped_on_2026_12_01_still_generates_in_a_fresh_process():
    """The frozen checkpoint (weights and Hub code as pushed on 2026-12-01, saved with transformers 5.24.0) loads with
    trust_remote_code alone on the installed transformers (CI: the oldest we admit, the lock, the newest) and generates
    the tokens it generated then, with and without the cache, warning of nothing deprecated in its code."""
    run_python(
        """
        import json, sys, warnings, torch
        from transformers import AutoModelForCausalLM
        warnings.filterwarnings("error", category=FutureWarning, module="transformers_modules")
        warnings.filterwarnings("error", category=DeprecationWarning, module="transformers_modules")
        folder = sys.argv[1]
        expected = json.load(open(folder + "/expected.json"))
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
        prompt = torch.tensor([expected["prompt"]])
        with torch.no_grad():
            logits = model(prompt).logits[0, -1]
        assert (logits - torch.tensor(expected["last_logits"])).abs().max() < 1e-5
        for use_cache in (True, False):
            tokens = model.generate(prompt, max_new_tokens=16, do_sample=False, use_cache=use_cache)
            assert tokens[0].tolist() == expected["greedy"], (use_cache, tokens)
        assert "hansard_hf" not in sys.modules
        """,
        FROZEN,
    )


def test_todays_package_reads_the_frozen_checkpoint():
    expected = json.loads((FROZEN / "expected.json").read_text())
    model = HansardGPTForCausalLM.from_pretrained(FROZEN)
    prompt = torch.tensor([expected["prompt"]])
    with torch.no_grad():
        assert (model(prompt).logits[0, -1] - torch.tensor(expected["last_logits"])).abs().max() < 1e-5
    assert model.generate(prompt, max_new_tokens=16, do_sample=False)[0].tolist() == expected["greedy"]


def test_export_to_native_nanochat_identical_logits(tiny_model, input_ids, tmp_path):
    save_tiny_tokenizer(tmp_path / "ckpt")
    tiny_model.save_pretrained(tmp_path / "ckpt")
    export_to_nanochat(tmp_path / "ckpt", tmp_path / "native")
    config = json.loads((tmp_path / "native" / "config.json").read_text())
    assert config["model_type"] == "nanochat" and "auto_map" not in config
    assert not list((tmp_path / "native").glob("*.py"))
    native = AutoModelForCausalLM.from_pretrained(tmp_path / "native")  # no trust_remote_code
    assert type(native) is NanoChatForCausalLM
    assert max_logit_difference(tiny_model, native, input_ids) < 1e-5
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "native")
    assert tokenizer("the hon. member").input_ids == [1, 5, 6]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_export_in_a_fresh_process_without_hansard_hf(tiny_model, input_ids, tmp_path):
    export_to_nanochat(tiny_model, tmp_path / "native")
    torch.save({"ids": input_ids, "logits": tiny_model(input_ids).logits}, tmp_path / "expected.pt")
    run_python(
        """
        import sys, torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
        expected = torch.load(sys.argv[2])
        with torch.no_grad():
            diff = (model(expected["ids"]).logits - expected["logits"]).abs().max().item()
        assert type(model).__name__ == "NanoChatForCausalLM" and diff < 1e-5, diff
        assert "hansard_hf" not in sys.modules
        """,
        tmp_path / "native",
        tmp_path / "expected.pt",
    )


def test_cli_export_and_import_round_trip(tiny_model, input_ids, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    cli = [sys.executable, "-m", "hansard_hf.cli"]
    done = subprocess.run([*cli, "export", tmp_path / "ckpt", tmp_path / "native"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "native NanoChat" in done.stdout
    again = subprocess.run([*cli, "export", tmp_path / "ckpt", tmp_path / "native"], capture_output=True, text=True)
    assert again.returncode == 1 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    done = subprocess.run([*cli, "import-nanochat", tmp_path / "native", tmp_path / "back"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    back = HansardGPTForCausalLM.from_pretrained(tmp_path / "back")
    assert max_logit_difference(tiny_model, back, input_ids) == 0
    assert (tmp_path / "back" / "modeling_hansard_gpt.py").exists()


def test_native_checkpoint_folder_loads_into_hansard(input_ids, tmp_path):
    torch.manual_seed(4)
    native = randomized(NanoChatForCausalLM(to_nanochat_config(tiny_config())))
    native.save_pretrained(tmp_path / "native")
    ours = hansard_hf.load_from_nanochat(tmp_path / "native")
    assert max_logit_difference(ours, native, input_ids) < 1e-5


def test_failed_export_leaves_nothing_behind(tiny_model, tmp_path, monkeypatch):
    def broken_save(self, folder, *args, **kwargs):
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(NanoChatForCausalLM, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="No space left"):
        export_to_nanochat(tiny_model, tmp_path / "native")
    assert list(tmp_path.iterdir()) == []
