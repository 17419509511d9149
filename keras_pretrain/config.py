"""Plain config objects: nested dataclasses, shown as JSON, overridden field by field with `KEY=VALUE`.

A pipeline is driven by one config object (see `keras_pretrain.pipelines`).
`override` changes any field by its dotted path, checking the key and the
value's type, so the CLI's `--set KEY=VALUE` and Python code share one path:

>>> from keras_pretrain.pipelines import load_recipe
>>> config = override(load_recipe("mae_fashion_mnist"), ["evaluation.labels_per_class=5", "encoder.hidden_dim=64"])
>>> print(to_json(config))
"""

import ast
import dataclasses
import difflib
import json
import types
import typing


class ConfigError(ValueError):
    """A config key that does not exist or a value of the wrong type; the message names the fix.

    Example:
    >>> PretrainConfig(epochs=0)
    Traceback (most recent call last):
    ConfigError: pretrain.epochs must be at least 1; got 0.
    """


class UnknownKeyError(ConfigError):
    """A dotted key that names no field of the config.

    Example:
    >>> override(load_recipe("mae_images"), ["pretrain.epoch=3"])
    Traceback (most recent call last):
    UnknownKeyError: Unknown config key 'pretrain.epoch': pretrain has epochs, ... Did you mean 'pretrain.epochs'?
    """


def to_dict(config):
    """The config as plain JSON-able data (dataclasses become dicts, tuples lists).

    Example:
    >>> to_dict(ViTConfig())
    {'patch_size': None, 'hidden_dim': 128, 'depth': 4, 'num_heads': 4, 'mlp_ratio': 2}
    """
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def to_json(config):
    """The whole config as indented JSON, as `keras-pretrain show` prints it.

    Example:
    >>> print(to_json(SimMimConfig()))
    {
      "mask_ratio": 0.6,
      "mask_block": 2
    }
    """
    return json.dumps(to_dict(config), indent=2)


def parse_assignment(text, option="--set", example="pretrain.epochs=3"):
    """`"a.b=3"` -> `("a.b", "3")`; a clear error, naming the command-line `option`, for text without `=`."""
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} takes KEY=VALUE (e.g. {example}); got {text!r}.")
    return key.strip(), value.strip()


def override(config, assignments):
    """A copy of `config` with each `"dotted.key=value"` (or `{key: value}` dict entry) applied in order.

    String values are read as Python literals (`3`, `1e-3`, `[1, 2]`,
    `None`, `True`), falling back to the plain string for text fields. The
    key must name an existing field and the value must fit its type; the
    error lists the fields that do exist. Each field is set as given: to
    change a recipe's pre-training budget, `load_recipe(name, overrides)` and
    `apply_overrides` also clear the budget the recipe set.

    Example:
    >>> config = override(config, {"evaluation.labels_per_class": 5})
    >>> config = override(config, ["data.labelled=photos/", "encoder.hidden_dim=64"])
    """
    items = assignments.items() if isinstance(assignments, dict) else map(parse_assignment, assignments)
    for key, value in items:
        config = _set(config, key.split("."), value, key)
    return config


def _set(node, path, value, key):
    if not dataclasses.is_dataclass(node):
        raise UnknownKeyError(f"Unknown config key {key!r}: {'.'.join(key.split('.')[:-len(path)])} has no fields.")
    fields = {f.name: f for f in dataclasses.fields(node)}
    name = path[0]
    if name not in fields:
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f" Did you mean {'.'.join(key.split('.')[:-len(path)] + close)!r}?" if close else ""
        where = ".".join(key.split(".")[: -len(path)]) or "the config"
        raise UnknownKeyError(f"Unknown config key {key!r}: {where} has {', '.join(fields)}.{hint}")
    current = getattr(node, name)
    if len(path) > 1:
        return dataclasses.replace(node, **{name: _set(current, path[1:], value, key)})
    hint = typing.get_type_hints(type(node))[name]
    return dataclasses.replace(node, **{name: coerce(value, hint, key)})


def coerce(value, hint, key):
    """`value` (a string from the command line, or any Python value) checked against type `hint`.

    Example:
    >>> coerce("[1, 5]", list[int], "evaluation.curve_labels_per_class")
    [1, 5]
    >>> coerce("three", int, "pretrain.epochs")
    Traceback (most recent call last):
    ConfigError: pretrain.epochs must be an integer; got 'three' (str).
    """
    if isinstance(value, str) and hint is not str:
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # a bare word: only a text field (or one that allows text) takes it
    if _fits(value, hint):
        return list(value) if isinstance(value, tuple) and _origin(hint) is list else value
    raise ConfigError(f"{key} must be {_describe(hint)}; got {value!r} ({type(value).__name__}).")


def _origin(hint):
    return typing.get_origin(hint) or hint


def _fits(value, hint):
    if hint is typing.Any:
        return True
    origin = _origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return not args or all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, origin)


def _describe(hint):
    origin = _origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return f"a list of {_describe(args[0])}" if args else "a list"
    return {int: "an integer", float: "a number", str: "text", bool: "True or False", dict: "a dict"}.get(
        origin, getattr(origin, "__name__", str(origin))
    )


def check(condition, message):
    """Raise `ConfigError(message)` unless `condition`: config classes validate in `__post_init__` with it.

    Example:
    >>> check(self.epochs >= 1, f"pretrain.epochs must be at least 1; got {self.epochs}.")
    """
    if not condition:
        raise ConfigError(message)


def check_sizes(config, section, names, at_least=1):
    """`check` that each field of `config` in `names` is None or at least `at_least`, named `section.field`.

    Example:
    >>> check_sizes(self, "encoder", ("hidden_dim", "depth", "num_heads"))
    """
    for name in names:
        value = getattr(config, name)
        check(value is None or value >= at_least, f"{section}.{name} must be at least {at_least}; got {value}.")


def check_divisible(config, section, name, by, why=""):
    """`check` that the field `name` of `config` is divisible by `by` (a number, or another field's name).

    Example:
    >>> check_divisible(self, "encoder", "hidden_dim", "num_heads")
    """
    divisor = getattr(config, by) if isinstance(by, str) else by
    shown = f"{section}.{by} {divisor}" if isinstance(by, str) else divisor
    value = getattr(config, name)
    check(value % divisor == 0, f"{section}.{name} {value} must be divisible by {shown}{why}.")


def check_fraction(value, key):
    """`check` that a mask ratio `value` (the field `key`) is strictly between 0 and 1.

    Example:
    >>> check_fraction(self.mask_ratio, "mae.mask_ratio")
    """
    check(0 < value < 1, f"{key} must be strictly between 0 and 1; got {value}.")


def suggest(word, choices):
    """`"; did you mean a, b?"` naming the choices closest to a mistyped `word`, or "" when none is close.

    Example:
    >>> suggest("bert_tiny_en_uncasedd", ["bert_tiny_en_uncased", "bert_base_en"])
    '; did you mean bert_tiny_en_uncased?'
    """
    close = difflib.get_close_matches(word, list(choices), n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""
