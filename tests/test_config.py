import dataclasses
import json

import pytest

from keras_pretrain.config import ConfigError, override, to_dict, to_json


@dataclasses.dataclass
class Inner:
    rate: float = 0.1
    widths: list[int] | None = None
    grid: list[tuple[float, float | None]] = dataclasses.field(default_factory=lambda: [(1e-3, 0.75)])


@dataclasses.dataclass
class Outer:
    name: str = "x"
    epochs: int = 3
    test: str | None = None
    flag: bool = False
    inner: Inner = dataclasses.field(default_factory=Inner)
    extra: dict = dataclasses.field(default_factory=dict)


def test_overrides_parse_literals_and_keep_the_original():
    original = Outer()
    changed = override(original, ["epochs=5", "inner.rate=2e-3", "inner.widths=[16, 32]", "name=photos/cats",
                                  "test=None", "flag=True", "inner.grid=[(1e-3, None), (3e-4, 0.8)]"])
    assert changed.epochs == 5 and changed.inner.rate == 2e-3 and changed.inner.widths == [16, 32]
    assert changed.name == "photos/cats" and changed.test is None and changed.flag is True
    assert changed.inner.grid == [(1e-3, None), (3e-4, 0.8)]
    assert original == Outer()  # configs are values: override returns a copy
    assert override(original, {"inner.rate": 1}).inner.rate == 1  # an int is a fine float
    assert override(original, ["test=data/test"]).test == "data/test"  # a bare word for an optional text field


def test_unknown_keys_name_the_fields_that_exist():
    with pytest.raises(ConfigError, match=r"Unknown config key 'epoch': the config has name, epochs.*Did you mean 'epochs'"):
        override(Outer(), ["epoch=3"])
    with pytest.raises(ConfigError, match=r"Unknown config key 'inner.rat': inner has rate, widths, grid.*'inner.rate'"):
        override(Outer(), ["inner.rat=3"])
    with pytest.raises(ConfigError, match="epochs has no fields"):
        override(Outer(), ["epochs.x=3"])
    with pytest.raises(ConfigError, match="--set takes KEY=VALUE"):
        override(Outer(), ["epochs"])


@pytest.mark.parametrize("assignment, message", [
    ("epochs=3.5", r"epochs must be an integer; got 3.5 \(float\)"),
    ("epochs=three", r"epochs must be an integer; got 'three'"),
    ("flag=1", "flag must be True or False"),
    ("inner.widths=[1, 'a']", "inner.widths must be a list of an integer or None"),
    ("inner.rate=fast", "inner.rate must be a number"),
])
def test_values_of_the_wrong_type_are_refused(assignment, message):
    with pytest.raises(ConfigError, match=message):
        override(Outer(), [assignment])


def test_json_shows_every_field():
    shown = json.loads(to_json(Outer()))
    assert shown == {"name": "x", "epochs": 3, "test": None, "flag": False, "extra": {},
                     "inner": {"rate": 0.1, "widths": None, "grid": [[1e-3, 0.75]]}}
