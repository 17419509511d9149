"""Every name a package exports exists, so `from keras_pretrain.PACKAGE import *` works."""

import importlib

import pytest

PACKAGES = ["pipelines", "models", "objectives", "data", "export", "distribute"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_exists(package):
    module = importlib.import_module(f"keras_pretrain.{package}")
    assert module.__all__
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
