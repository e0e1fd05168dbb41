"""Recipes: the built-in YAMLs resolve for every method, overrides reach nested keys, and the
schedule keeps its shape when a run is shortened."""
import pytest

from elp_fast.tasks.methods import METHODS
from elp_fast.tasks.registry import BUILTIN as TASKS
from elp_fast.tasks.recipe import (RecipeError, apply_overrides, load_recipe, resolve_engine,
                                   resolve_model)


@pytest.mark.parametrize("task", TASKS)
def test_every_recipe_resolves_for_every_method(task):
    recipe = load_recipe(task)
    assert set(recipe["methods"]) == set(METHODS)
    for method in METHODS:
        cfg = resolve_engine(recipe, method, steps_per_epoch=10, fixed={})
        assert cfg.group_lr == recipe["methods"][method]
        assert cfg.max_steps == 10 * recipe["train"]["epochs"]
        resolve_model(recipe, method)


def test_per_epoch_factors_become_piecewise_points_and_shrink_with_max_steps():
    recipe = load_recipe("sic")  # 7 epochs: 0.1, 0.5, 0.7, 1.0, 0.5, 0.3, 0.1
    full = resolve_engine(recipe, "elp", 100, {})
    assert full.schedule == "piecewise" and full.lr_points[:3] == [[0, 0.1], [100, 0.5], [200, 0.7]]
    short = resolve_engine(recipe, "elp", 100, {"max_steps": 14})  # two steps per epoch
    assert [short.lr_factor(s) for s in range(14)] == [0.1, 0.1, 0.5, 0.5, 0.7, 0.7, 1.0, 1.0, 0.5, 0.5,
                                                         0.3, 0.3, 0.1, 0.1]
    assert short.eval_every == 2  # valid every epoch
    asr = resolve_engine(load_recipe("asr"), "elp", 50, {"max_steps": 100})  # one step per epoch
    assert asr.schedule == "piecewise" and asr.warmup_steps == 0
    assert asr.lr_factor(0) == pytest.approx(0.1) and asr.lr_factor(30) == pytest.approx(0.5005, abs=1e-4)


def published_asr_lambda(epoch, num_epochs=100, alpha=0.2, beta=0.03, start=10, end=1.0, scale=10):
    """The published E/L-adapter ASR schedule, re-derived: a LambdaLR stepped once per epoch over
    np.linspace(start, E, E*alpha)/E, then ones(E*beta), then
    np.linspace(E, end, N)/np.linspace(E, E*scale, N) with N = E - E*alpha - E*beta + 1."""
    import numpy as np

    n = num_epochs - int(num_epochs * alpha) - int(num_epochs * beta) + 1
    curve = np.concatenate([np.linspace(start, num_epochs, int(num_epochs * alpha)) / num_epochs,
                            np.ones(int(num_epochs * beta)),
                            np.linspace(num_epochs, end, n) / np.linspace(num_epochs, num_epochs * scale, n)])
    return float(curve[epoch])


def test_asr_schedule_is_the_published_per_epoch_curve():
    from elp_fast.tasks.recipe import hyperbolic_epoch_factors

    factors = hyperbolic_epoch_factors(100)
    assert len(factors) == 100
    assert factors == pytest.approx([published_asr_lambda(e) for e in range(100)], rel=1e-12)
    named = {0: 0.1, 3: 0.24211, 19: 1.0, 22: 1.0, 23: 1.0, 30: 0.5005, 50: 0.15709, 99: 0.0023127}
    for epoch, value in named.items():
        assert factors[epoch] == pytest.approx(value, rel=1e-4), epoch
    # the recipe's run: 100 epochs of 10 steps, each step at its epoch's factor
    cfg = resolve_engine(load_recipe("asr"), "elp", 10, {})
    assert cfg.max_steps == 1000
    assert [cfg.lr_factor(10 * e + 9) for e in (0, 30, 99)] == pytest.approx([0.1, 0.5005, 0.0023127], rel=1e-4)
    assert sum(factors) == pytest.approx(27.907, abs=1e-3)  # epochs at full rate, in all


def test_overrides_reach_nested_keys_and_schedules():
    recipe = apply_overrides(load_recipe("sic"), ["methods.elp.head=1e-3", "engine.group_lr.layer_norms=2e-5",
                                                  "schedule=cosine", "model.e_bottleneck=32", "train.epochs=2"])
    cfg = resolve_engine(recipe, "elp", 10, {})
    assert cfg.group_lr["head"] == 1e-3 and cfg.group_lr["layer_norms"] == 2e-5
    assert cfg.schedule == "cosine" and cfg.lr_points == [] and cfg.max_steps == 20
    assert resolve_model(recipe, "elp").e_bottleneck == 32
    assert load_recipe("sic")["methods"]["elp"]["head"] == 5e-4  # the built-in recipe is untouched


@pytest.mark.parametrize("items,message", [
    (["lr"], "expected SECTION.KEY=VALUE"),
    (["nosuch.key=1"], "unknown section 'nosuch'"),
    (["data.train.x=1"], "data.train is not a mapping"),
    (["model.e_bottleneck=[1"], "not valid YAML"),
])
def test_bad_overrides(items, message):
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace(".", r"\.")):
        apply_overrides(load_recipe("sic"), items)


def test_bad_recipes(tmp_path):
    with pytest.raises(RecipeError, match="--task: got 'tts'"):
        load_recipe("tts")
    bad = tmp_path / "r.yaml"
    bad.write_text("task: sic\nextra: {}\n")
    with pytest.raises(RecipeError, match=r"unknown section\(s\) \['extra'\]"):
        load_recipe(path=str(bad))
    bad.write_text("task: asr\n")
    with pytest.raises(RecipeError, match="is a recipe for task 'asr', not 'sic'"):
        load_recipe("sic", str(bad))
    recipe = apply_overrides(load_recipe("sic"), ["train.epochs=0"])
    with pytest.raises(RecipeError, match="train.epochs: got 0"):
        resolve_engine(recipe, "elp", 10, {})
    with pytest.raises(RecipeError, match="no learning rates for method 'elp'"):
        resolve_engine({**load_recipe("sic"), "methods": {}}, "elp", 10, {})
