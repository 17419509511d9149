"""Pipelines (data -> pre-train -> few-label evaluation -> export) and the recipes that configure them.

A recipe is a `.py` file defining one pipeline config: the built-in ones live
in `recipes/` (installed as `keras_pretrain.recipes`); a user's own file
works the same way.

Example:
>>> from keras_pretrain.pipelines import load_recipe, run
>>> config = load_recipe("mae_images", ["data.labelled=photos/", "pretrain.epochs=5"])
>>> results = run(config)
"""

import ast
import importlib
import importlib.util
import pkgutil
import traceback
from pathlib import Path

from keras_pretrain.pipelines.base import (
    ExportConfig,
    Pipeline,
    PretrainConfig,
    apply_overrides,
    apply_quick,
)
from keras_pretrain.pipelines.images import (
    ImageDataConfig,
    ImagePipeline,
    ImagePipelineConfig,
    LatentConfig,
    MaeConfig,
    SimMimConfig,
    ViTConfig,
)
from keras_pretrain.pipelines.text import (
    BertConfig,
    MlmConfig,
    TextDataConfig,
    TextPipeline,
    TextPipelineConfig,
    TokenizerConfig,
    text_evaluation,
)

PIPELINES = {ImagePipelineConfig: ImagePipeline, TextPipelineConfig: TextPipeline}

__all__ = [
    "BertConfig", "ExportConfig", "ImageDataConfig", "ImagePipeline", "ImagePipelineConfig", "LatentConfig",
    "MaeConfig", "MlmConfig", "Pipeline", "PretrainConfig", "SimMimConfig", "TextDataConfig", "TextPipeline",
    "TextPipelineConfig", "TokenizerConfig", "ViTConfig", "apply_overrides", "apply_quick", "text_evaluation",
    "load_recipe", "pipeline_for", "recipe_descriptions", "run",
]


def recipe_descriptions():
    """`{name: first docstring line}` of the built-in recipes, read without importing them (or keras).

    Example:
    >>> sorted(recipe_descriptions())[:3]
    ['bert_imdb', 'bert_text', 'bert_wordnet']
    """
    import keras_pretrain.recipes as package

    descriptions = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(Path(package.__path__[0], f"{module.name}.py").read_text())) or ""
        descriptions[module.name] = doc.strip().splitlines()[0] if doc else ""
    return descriptions


def load_recipe(name_or_path, overrides=(), quick=False):
    """The pipeline config of a built-in recipe (by name) or of a user's `.py` file, with `overrides` applied.

    The module must define exactly one pipeline config object
    (`ImagePipelineConfig` or `TextPipelineConfig`). `overrides` are
    `"key=value"` strings or a dict (see `keras_pretrain.pipelines.apply_overrides`: a
    pre-training budget named there replaces the recipe's);
    `quick=True` applies the recipe's smoke-run settings first.

    Example:
    >>> config = load_recipe("bert_text", {"data.labelled": "reviews.csv"}, quick=True)
    """
    if str(name_or_path).endswith(".py"):
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"Recipe file {path} does not exist.")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # the user's own code: say where in it, in one line
            here = path.resolve()
            frames = [f.lineno for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == here]
            line = error.lineno if isinstance(error, SyntaxError) else (frames[-1] if frames else "?")
            reason = error.msg if isinstance(error, SyntaxError) else " ".join(str(error).split())
            raise ValueError(f"Recipe file {path}, line {line}: {type(error).__name__}: {reason}") from error
    else:
        known = recipe_descriptions()
        if name_or_path not in known:
            raise ValueError(
                f"Unknown recipe {name_or_path!r}. Available: {', '.join(sorted(known))}; "
                "or pass the path of your own recipe file (my_recipe.py)."
            )
        module = importlib.import_module(f"keras_pretrain.recipes.{name_or_path}")
    configs = [value for value in vars(module).values() if isinstance(value, tuple(PIPELINES))]
    if len(configs) != 1:
        names = [name for name, value in vars(module).items() if isinstance(value, tuple(PIPELINES))]
        raise ValueError(
            f"{name_or_path} must define exactly one recipe (an ImagePipelineConfig or TextPipelineConfig); "
            f"found {len(configs)}{': ' + ', '.join(names) if names else ''}."
        )
    config = configs[0]
    if quick:
        config = apply_quick(config)
    return apply_overrides(config, overrides)


def pipeline_for(config, distribution=None, verbose=1, callbacks=(), restart=False):
    """The pipeline that runs `config`.

    Example:
    >>> pipeline = pipeline_for(load_recipe("mae_fashion_mnist"))
    >>> data = pipeline.load_data()            # the splits and the pre-training data, to drive steps by hand
    """
    for config_class, pipeline_class in PIPELINES.items():
        if isinstance(config, config_class):
            return pipeline_class(config, distribution=distribution, verbose=verbose, callbacks=callbacks, restart=restart)
    raise TypeError(f"No pipeline runs a {type(config).__name__}; expected one of {[c.__name__ for c in PIPELINES]}.")


def run(config, distribution=None, verbose=1, callbacks=(), restart=False):
    """Run a pipeline config end to end; return the `results.json` dict (None off the chief process).

    `callbacks` go to pre-training's `fit` (after the plan's and before the
    checkpointing); `restart` drops what an earlier run in the same output
    directory left instead of resuming from it.

    Example:
    >>> results = run(load_recipe("bert_wordnet", quick=True))
    >>> results["pretrained_accuracy"], results["pretrained_protocol"], results["export_path"]
    """
    return pipeline_for(config, distribution, verbose, callbacks, restart).run()
