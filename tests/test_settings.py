"""Issue 16, part 4: one settings style. Every method's settings are a validated dataclass; a bad value is
a `SettingError` naming the method, the key and what was expected; an unknown key lists the known ones;
a config and `--set` report the key."""

from __future__ import annotations

import pytest

from prompthone.optimize.registry import OPTIMIZERS, make_optimizer
from prompthone.optimize.settings import MethodSettings, SettingError

#: per method: (a bad setting, the words its message must hold)
BAD = {
    "mipro": ({"num_trials": 0}, "mipro setting num_trials must be an integer >= 1 or None, got 0"),
    "mipro-0shot": ({"minibatch_size": 0}, "mipro setting minibatch_size must be an integer >= 1, got 0"),
    "bayesian-bootstrap": ({"max_labeled_demos": -1}, "mipro setting max_labeled_demos must be an integer >= 0"),
    "mipro++": ({"proposal_temperature": 3.0}, "mipro setting proposal_temperature must be in (0, 2], got 3.0"),
    "labeled-fewshot": ({"k": 0}, "labeled-fewshot setting k must be an integer >= 1, got 0"),
    "bootstrap-fewshot": ({"teacher_labeled": -2}, "bootstrap-fewshot setting teacher_labeled must be an integer >= 0"),
    "bootstrap-random-search": (
        {"cover_labels": "no"},
        "bootstrap-random-search setting cover_labels must be true or false, got 'no'",
    ),
    "opro": ({"history_order": "sideways"}, "opro setting history_order must be one of ['ascending', "),
    "gradsum": ({"edit_temperature": 0}, "gradsum setting edit_temperature must be in (0, 2], got 0"),
    "gradsum-nosum": ({"failures_per_edit": 0}, "gradsum-nosum setting failures_per_edit must be an integer >= 1"),
}
METHODS = [name for name, entry in OPTIMIZERS.items() if isinstance(entry, str) and entry.startswith("prompthone.")]


def test_every_method_has_a_settings_dataclass_with_its_defaults() -> None:
    assert sorted(BAD) == sorted(METHODS)
    for name in METHODS:
        opt = make_optimizer(name)
        assert isinstance(opt.settings, MethodSettings), name
        assert opt.settings == type(opt.settings).build(
            **({"preset": "light"} if name.startswith(("mipro", "bay")) else {})
        )


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_names_the_method_key_and_what_was_expected(name: str) -> None:
    settings, words = BAD[name]
    with pytest.raises(SettingError) as err:
        make_optimizer(name, **settings)
    (key,) = settings
    assert err.value.key == key
    assert words in str(err.value)


@pytest.mark.parametrize("name", ["opro", "gradsum", "labeled-fewshot", "bootstrap-random-search"])
def test_an_unknown_key_lists_the_known_ones(name: str) -> None:
    with pytest.raises(TypeError, match=rf"unknown {name} setting\(s\) \['nope'\]; known settings: .*"):
        make_optimizer(name, nope=1)


def test_a_number_is_not_a_bool_and_values_read_as_their_type() -> None:
    with pytest.raises(SettingError, match="opro setting steps: expected a number, got True"):
        make_optimizer("opro", steps=True)
    with pytest.raises(SettingError, match="gradsum setting iterations: expected a valid integer, got 'many'"):
        make_optimizer("gradsum", iterations="many")
    assert make_optimizer("opro", temperature=1).settings.temperature == 1.0
    assert isinstance(make_optimizer("opro", temperature=1).settings.temperature, float)


def test_settings_are_frozen_and_replace_checks_again() -> None:
    s = make_optimizer("gradsum").settings
    with pytest.raises(AttributeError):
        s.iterations = 9  # type: ignore[misc]
    with pytest.raises(SettingError, match="beam_width"):
        s.replace(beam_width=0)
    assert s.replace(beam_width=5).beam_width == 5
