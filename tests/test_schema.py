"""The structured configs (gan_landscape/config/schema.py): every key of gl-train's, gl-eval's and
gl-landscape's YAML is a field of a dataclass registered in Hydra's ConfigStore, its range rule sits
next to it and is the one checked; the YAML keeps every value and the key order of a run's
config.yaml; a misspelt key is one line naming the node's keys, exit status 2."""
import dataclasses
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import make_cfg
from gan_landscape.metrics import fid
from gan_landscape.commands import landscape
from gan_landscape.config import rules, schema
from gan_landscape.cli import ConfigError, UserError
from gan_landscape.commands.evaluate import evaluate
from gan_landscape.kinds import validate

IMAGE = ["dataset=cifar10", "model=cnn"]
TRAIN_KEYS = ["device", "iters", "batch_size", "n_dis", "num_seeds", "log_every", "log_seconds",
              "sample_every", "ckpt_every", "keep_checkpoints", "lr_decay_start", "ema", "cuda_graph",
              "cpu_kernel", "precision", "channels_last", "cpu_threads", "fid_every", "fid_samples",
              "optimal_d", "d_converge_steps"]


def tool(module: str, *args, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", f"gan_landscape.commands.{module}", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


# ---------------------------------------------------------------- the schema and the YAML

def test_train_is_one_node_made_of_its_parts():
    parts = [schema.SharedTrain, schema.ImageTrain, schema.SyntheticTrain]
    assert all(issubclass(schema.Train, p) for p in parts)
    assert {"cuda_graph", "channels_last", "ema", "fid_every"} <= set(rules.rules_of(schema.ImageTrain))
    assert {"cpu_kernel", "optimal_d"} <= set(rules.rules_of(schema.SyntheticTrain))
    assert not set(rules.rules_of(schema.ImageTrain)) & set(rules.rules_of(schema.SyntheticTrain))
    cfg = make_cfg()
    assert OmegaConf.get_type(cfg.train) is schema.Train and OmegaConf.get_type(cfg.fid) is schema.Fid
    # merged last: the YAML's values and order, so a run dir's config.yaml reads as before
    assert list(cfg) == ["seed", "width", "experiment_name", "train", "dataset", "model", "loss", "optim", "fid"]
    assert list(cfg.train) == TRAIN_KEYS and cfg.train.cuda_graph is True and cfg.train.iters == 5000


@pytest.mark.parametrize("name,overrides", [
    ("config", []), ("config", IMAGE), ("config", ["experiment=cifar10_widths"]),
    ("config", ["fid=standard"]), ("eval", ["run=x"]), ("landscape", ["run_dir=x"])])
def test_the_yaml_gives_every_field_a_value(name, overrides):
    cfg = make_cfg(*overrides, config_name=name)
    assert OmegaConf.get_type(cfg) is schema.SCHEMAS[f"{name}_schema"]
    missing = OmegaConf.missing_keys(cfg)
    assert missing <= {"dataset", "model"} if name == "eval" else missing == set()


def _bad_value_cases(app, name, base):
    return [(name, base, key) for key in rules.rules_of(app)]


@pytest.mark.parametrize("name,base,key", [
    *_bad_value_cases(schema.TrainApp, "config", []),
    *_bad_value_cases(schema.Eval, "eval", ["run=x"]),
    *_bad_value_cases(schema.Landscape, "landscape", ["run_dir=x"])])
def test_each_fields_rule_is_the_one_checked(name, base, key):
    """A word is of the wrong type for every rule: each ruled field fails on it, in one line
    naming that key, whichever command reads it."""
    cfg = make_cfg(*base, f"{key}=abc", config_name=name)
    with pytest.raises(UserError) as e:
        {"config": validate, "eval": evaluate, "landscape": landscape.analyse}[name](cfg)
    assert str(e.value).startswith(f"{key}=abc: expected ")


def test_a_misspelt_key_in_a_yaml_is_one_line(tmp_path):
    """A key no dataclass has, from a YAML (here an experiment of one's own): not silently kept."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\ntrain: {itrs: 5}\n")
    cfg = make_cfg(f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo")
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    fields = [f.name for f in dataclasses.fields(schema.Train)]
    assert str(e.value) == f"train.itrs is not a setting; train has {', '.join(fields)}"


# ---------------------------------------------------------------- the command line, before Hydra

@pytest.mark.parametrize("overrides,line", [
    (["train.itrs=5"], "train.itrs is not a setting; train has device, iters, batch_size, "),
    (["+train.itrs=5"], "train.itrs is not a setting; train has device, iters, "),
    (["fid.kid.sed=1"], "fid.kid.sed is not a setting; fid.kid has subsets, subset_size, degree, coef0, seed"),
    (["sed=1"], "sed is not a setting; the config has seed, width, experiment_name, train, dataset, model, "
                "loss, optim, fid, experiment, recipe"),
    (["+fid.random_weights=true"], "fid.random_weights is not a setting: for a seeded random Inception "
                                   "pass fid.weights=random (fid.weights_seed=N)"),
])
def test_misspelt_overrides_are_named_with_the_nodes_keys(overrides, line):
    with pytest.raises(ConfigError) as e:
        rules.misspelt(overrides, schema.TrainApp, schema.groups())
    assert str(e.value).startswith(line)


def test_group_choices_hydra_keys_deletions_and_open_nodes_pass():
    rules.misspelt(["dataset=cifar10", "recipe=cnn_cifar10", "hydra.run.dir=x", "hydra/launcher=basic",
                    "~train.ema", "dataset.root=/d", "model.base=8", "train.iters=1,2", "fid.kid.seed=3",
                    "plan.seeds=2", "loss@x=jsgan", "not a valid override ]"], schema.TrainApp, schema.groups())


@pytest.mark.parametrize("module,args,line", [
    ("train", ["train.itrs=5"], "gl-train: train.itrs is not a setting; train has device, iters, "),
    ("evaluate", ["stpe=all"], "gl-eval: stpe is not a setting; the config has run, checkpoint, step, "),
    ("landscape", ["run_dir=x", "eig.kk=3"], "gl-landscape: eig.kk is not a setting; eig has enabled, k, "),
    # bad values, one line each, before any file is read
    ("evaluate", ["run=x", "fid.n_fake=0"], "gl-eval: fid.n_fake=0: expected a positive integer"),
    ("landscape", ["run_dir=x", "synthetic.dtype=float16"],
     "gl-landscape: synthetic.dtype=float16: expected one of float64, float32"),
])
def test_each_command_says_it_in_one_line(tmp_path, module, args, line):
    out = tool(module, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), out.stderr
    assert list(tmp_path.iterdir()) == [], "nothing is written for a bad input"


# ---------------------------------------------------------------- gl-eval and gl-landscape values

@pytest.mark.parametrize("overrides,line", [
    (["run=x", "which=[G]"], "which=['G']: expected raw and/or ema"),
    (["run=x", "which=[]"], "which=[]: expected raw and/or ema"),
    (["run=x", "step=latest"], "step=latest: expected final, all or a step number"),
    (["run=x", "device=gpu"], "device=gpu: expected auto, cpu, cuda or cuda:N"),
    (["run=x", "force=yes"], "force=yes: expected true or false"),
    (["run=x", "fid.dims=100"], "fid.dims=100: expected one of 64, 192, 768, 2048"),
    (["run=x", "checkpoint=y"], "give exactly one of run=DIR or checkpoint=PATH"),
])
def test_gl_eval_values_are_one_line(overrides, line):
    with pytest.raises(UserError) as e:
        evaluate(make_cfg(*overrides, config_name="eval"))
    assert str(e.value) == line


@pytest.mark.parametrize("overrides,line", [
    (["synthetic.dtype=half"], "synthetic.dtype=half: expected one of float64, float32"),
    (["eig.k=0"], "eig.k=0: expected an integer > 0"),
    (["slices.losses=[jsgan,wgan]"], "slices.losses=['jsgan', 'wgan']: expected a list of jsgan, hinge, "
                                     "lsgan, rsgan, rphinge, rplsgan"),
    (["step=-1"], "step=-1: expected null or an integer >= 0"),
    (["device=tpu"], "device=tpu: expected auto, cpu, cuda or cuda:N"),
])
def test_gl_landscape_values_are_one_line(overrides, line):
    with pytest.raises(landscape.LandscapeError) as e:
        landscape.analyse(make_cfg("run_dir=x", *overrides, config_name="landscape"))
    assert str(e.value) == line


def test_fid_check_reads_the_same_rules():
    with pytest.raises(fid.FIDError) as e:
        fid.check(make_cfg("fid.kid.subsets=0").fid)
    assert str(e.value) == "fid.kid.subsets=0: expected a positive integer"
    with pytest.raises(ConfigError) as e:  # gl-train checks its fid node at the door too
        validate(make_cfg(*IMAGE, "fid.quantize=floor"))
    assert str(e.value) == "fid.quantize=floor: expected truncate or round"
