import json
import textwrap

import keras
import pytest

from keras_pretrain import cli
from keras_pretrain.recipe import Recipe, load_recipe, recipe_descriptions
from tests.conftest import run_python

MY_RECIPE = '''
"""A user's recipe."""
import keras
from keras_pretrain.recipe import Recipe


class MyRecipe(Recipe):
    name = "my_recipe"

    def run(self):
        self.write_results({"labels_per_class": self.labels_per_class})
        print("ran on", keras.backend.backend())
'''


def test_help_and_recipe_list(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--help"])
    assert exit.value.code == 0
    assert "run" in capsys.readouterr().out
    assert cli.main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "mae_fashion_mnist" in listing
    assert listing.count("\n") == len(recipe_descriptions())


def test_unknown_recipe_fails_with_the_list(capsys):
    assert cli.main(["run", "no_such_recipe"]) == 1
    error = capsys.readouterr().err
    assert "Unknown recipe 'no_such_recipe'" in error and "mae_fashion_mnist" in error


def test_missing_recipe_file_and_bad_arguments(capsys, tmp_path):
    assert cli.main(["run", str(tmp_path / "missing.py")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["run", "mae_fashion_mnist", "--labels-per-class", "0"]) == 1
    assert "labels_per_class must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        cli.main(["run", "mae_fashion_mnist", "--backend", "numpy"])
    assert exit.value.code == 2


def test_user_recipe_file_runs_on_the_backend_the_flag_names(tmp_path):
    # A fresh process: the flag must choose the backend before keras is imported.
    (tmp_path / "my_recipe.py").write_text(MY_RECIPE)
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    code = textwrap.dedent(f"""
        import sys
        from keras_pretrain.cli import main
        sys.exit(main(["run", {str(tmp_path / 'my_recipe.py')!r}, "--backend", {other!r},
                       "--output", {str(tmp_path / 'out')!r}, "--labels-per-class", "3"]))
    """)
    result = run_python(code, backend="tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"ran on {other}" in result.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results == {"recipe": "my_recipe", "backend": other, "labels_per_class": 3}


def test_recipe_file_must_define_one_recipe(tmp_path):
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="exactly one subclass"):
        load_recipe(tmp_path / "empty.py")
    assert issubclass(type(load_recipe("mae_fashion_mnist", quick=True)), Recipe)
