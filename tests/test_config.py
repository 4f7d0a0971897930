"""gl-train's config checks at the door: each bad value is one line naming key, value and what is
allowed; every config the project ships passes."""
from pathlib import Path

import pytest

from conftest import CONFIGS, make_cfg
from gan_landscape.cli import ConfigError, UserError
from gan_landscape.config import models_for
from gan_landscape.kinds import validate

IMAGE = ["dataset=cifar10", "model=cnn"]


def error(*overrides) -> str:
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert isinstance(err.value, UserError)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("overrides,line", [
    # types, as Hydra hands them over: a word is a string, 1.5 a float, 1e3 a float, 'true' a string
    (["width=abc"], "width=abc: expected a number > 0"),
    (["seed=1.5"], "seed=1.5: expected an integer >= 0"),
    (["seed=abc"], "seed=abc: expected an integer >= 0"),
    (["seed=true"], "seed=true: expected an integer >= 0"),
    (["train.iters=abc"], "train.iters=abc: expected an integer > 0"),
    (["train.iters=1e3"], "train.iters=1000.0: expected an integer > 0"),
    (["train.cpu_kernel=yes"], "train.cpu_kernel=yes: expected true or false"),
    (["train.cuda_graph='true'"], "train.cuda_graph='true': expected true or false"),
    (["train.iters='100'"], "train.iters='100': expected an integer > 0"),
    (["train.channels_last=1"], "train.channels_last=1: expected true or false"),
    (["train.optimal_d=no"], "train.optimal_d=no: expected true or false"),
    # ranges
    (["seed=-1"], "seed=-1: expected an integer >= 0"),
    (["width=0"], "width=0: expected a number > 0"),
    (["width=-1"], "width=-1: expected a number > 0"),
    (["width=inf"], "width=inf: expected a number > 0"),
    ([*IMAGE, "width=0"], "width=0: expected a number > 0"),
    ([*IMAGE, "width=-1"], "width=-1: expected a number > 0"),
    (["train.iters=-5"], "train.iters=-5: expected an integer > 0"),
    (["train.iters=0"], "train.iters=0: expected an integer > 0"),
    (["train.n_dis=0"], "train.n_dis=0: expected an integer > 0"),
    (["train.num_seeds=0"], "train.num_seeds=0: expected an integer > 0"),
    (["train.log_every=0"], "train.log_every=0: expected an integer > 0"),
    (["train.sample_every=-1"], "train.sample_every=-1: expected an integer > 0"),
    (["train.ckpt_every=0"], "train.ckpt_every=0: expected an integer > 0"),
    (["train.log_seconds=0"], "train.log_seconds=0: expected a number > 0"),
    (["train.fid_every=0"], "train.fid_every=0: expected null or an integer > 0"),
    (["train.cpu_threads=0"], "train.cpu_threads=0: expected null or an integer > 0"),
    (["train.ema=1"], "train.ema=1: expected null or a number strictly between 0 and 1"),
    (["train.ema=0"], "train.ema=0: expected null or a number strictly between 0 and 1"),
    (["train.lr_decay_start=-1"], "train.lr_decay_start=-1: expected null or an integer >= 0"),
    (["train.keep_checkpoints=0"], "train.keep_checkpoints=0: expected an integer > 0 or all"),
    (["train.keep_checkpoints=some"], "train.keep_checkpoints=some: expected an integer > 0 or all"),
    # issue 21: a width whose layers round to 0 units (the nets would clamp them to 1 silently)
    (["width=1e-9"], "width=1e-09: a layer of model=mlp would have 0 units; expected width >= 0.11"),
    ([*IMAGE, "width=1e-9"], "width=1e-09: a layer of model=cnn would have 0 units; expected width >= 0.0082"),
    (["dataset=cifar10", "model=resnet", "width=0.003"],
     "width=0.003: a layer of model=resnet would have 0 units; expected width >= 0.0059"),
    (["train.precision=fp16"], "train.precision=fp16: expected one of fp32, tf32, bf16"),
    (["optim.g_lr=0"], "optim.g_lr=0: expected a number > 0"),
    (["model.g_act=gelu"], "model.g_act=gelu: expected one of tanh, sigmoid, relu, leaky_relu"),
    (["model.d_last_bias=maybe"], "model.d_last_bias=maybe: expected true or false"),
    ([*IMAGE, "dataset.image_size=0"], "dataset.image_size=0: expected an integer > 0"),
    (["dataset.cover_frac=2"], "dataset.cover_frac=2: expected a number in (0, 1]"),
    # batches: null only where the data are used whole (two-cluster, Li et al.'s model)
    ([*IMAGE, "train.batch_size=null"], "train.batch_size=null: expected an integer > 0"),
    (["dataset=five_gaussian", "train.batch_size=null"], "train.batch_size=null: expected an integer > 0"),
    (["train.batch_size=0"], "train.batch_size=0: expected null or an integer > 0"),
    # device names by their form only: no GPU needed to check them
    (["train.device=gpu"], "train.device=gpu: expected auto, cpu, cuda or cuda:N"),
    (["train.device=cuda:x"], "train.device=cuda:x: expected auto, cpu, cuda or cuda:N"),
    # names
    (["dataset=cifar10"], "model=mlp does not fit dataset=cifar10; models for cifar10: cnn, resnet (set model=...)"),
    (["dataset=lsun", "model=cnn"], "model=cnn does not fit dataset=lsun; models for lsun: cnn256 (set model=...)"),
    (["model=cnn"], "model=cnn does not fit dataset=two_cluster; models for two_cluster: mlp (set model=...)"),
    (["loss.name=wgan"], "loss=wgan: unknown loss; gan_landscape/losses.py registers jsgan, hinge, lsgan, "
                         "rsgan, rphinge, rplsgan"),
    (["dataset.name=moons"], "dataset=moons: no synthetic dataset of that name; gan_landscape/data/synthetic.py "
                             "registers two_cluster, five_gaussian, ring8, grid25"),
    ([*IMAGE, "dataset.name=mnist"], "dataset=mnist: no image dataset of that name; gan_landscape/data/__init__.py "
                                     "registers cifar10, stl10, lsun"),
    ([*IMAGE, "dataset.kind=video"], "dataset.kind=video: expected one of image, synthetic, population "
                                      "or an importable module path"),
])
def test_one_line_names_key_value_and_what_is_allowed(overrides, line):
    assert error(*overrides) == line


@pytest.mark.parametrize("overrides", [
    [], ["train.device=cuda:3"], ["train.device=cpu"], ["width=1"], ["width=0.125"],
    ["train.batch_size=null"], ["train.ema=0.999", "train.lr_decay_start=0"], ["train.cpu_threads=2"],
    ["train.fid_every=100"], ["train.precision=bf16"], ["train.log_seconds=0.5"],
    ["train.keep_checkpoints=all"], ["train.keep_checkpoints=1"], [*IMAGE, "width=0.0082"],
])
def test_good_values_pass(overrides):
    validate(make_cfg(*overrides))


def test_every_shipped_pair_and_experiment_passes():
    pairs = [p.stem for p in (Path(CONFIGS) / "recipe").glob("*.yaml")]
    assert len(pairs) >= 8
    for dataset in sorted(p.stem for p in (Path(CONFIGS) / "dataset").glob("*.yaml")):
        for model in models_for(dataset):
            validate(make_cfg(f"dataset={dataset}", f"model={model}"))
            pairs.remove(f"{model}_{dataset}")
    assert pairs == []  # every recipe was reached through models_for
    for exp in sorted(p.stem for p in (Path(CONFIGS) / "experiment").glob("*.yaml")):
        validate(make_cfg(f"experiment={exp}"))


def test_models_for_reads_the_recipes():
    assert models_for("cifar10") == ["cnn", "resnet"] and models_for("lsun") == ["cnn256"]
    assert models_for("no_such_data") == []


def test_short_image_runs_decay_over_their_second_half():
    """issue 21: `train.iters=200` used to fail on the paper's lr_decay_start=50000."""
    for model in ("cnn", "resnet"):
        cfg = make_cfg("dataset=cifar10", f"model={model}", "train.iters=200")
        validate(cfg)
        assert cfg.train.lr_decay_start == 100
    assert make_cfg("dataset=stl10", "model=cnn").train.lr_decay_start == 50000  # the paper's


def test_an_explicit_start_past_the_end_means_no_decay_said_once(caplog):
    caplog.set_level("WARNING")
    validate(make_cfg(*IMAGE, "train.iters=200", "train.lr_decay_start=50000"))
    [rec] = [r for r in caplog.records if "lr_decay_start" in r.getMessage()]
    assert rec.getMessage() == ("train.lr_decay_start=50000 is past the last iteration (train.iters=200): "
                                "no learning-rate decay")
