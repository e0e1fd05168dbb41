"""Recipes: the built-in YAMLs resolve for every method, overrides reach nested keys, and the
schedule keeps its shape when a run is shortened."""
import pytest

from elp_fast.tasks.methods import METHODS
from elp_fast.tasks.recipe import (TASKS, RecipeError, apply_overrides, load_recipe, resolve_engine,
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
    asr = resolve_engine(load_recipe("asr"), "elp", 50, {"max_steps": 100})
    assert asr.warmup_steps == 20 and asr.schedule == "linear"  # 20 of 100 epochs warm up


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
