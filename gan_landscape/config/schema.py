"""The structured configs of gl-train (configs/config.yaml), gl-eval (eval.yaml) and gl-landscape
(landscape.yaml): the keys of each node and each key's range rule (rules.py). The values are the
YAML's, the one place users read them: every leaf here is MISSING.

Each is registered in Hydra's ConfigStore as `<config>_schema` and named last in its config's
defaults list: merged last, MISSING leaves change no value and no key order (a run dir's
config.yaml reads as before), and the nodes come out typed and closed. Leaves are typed `Any`
because Hydra types an override by its form; rules.check reads the rules from here.
"""
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from gan_landscape.cli import CONFIG_DIR
from gan_landscape.losses import LOSSES as _LOSSES
from gan_landscape.metrics.features import NAMES as _METRICS
from gan_landscape.config.rules import BOOL, DEVICE, EMA, KEEP, NONNEG_INT, NONNEG_NUMBER, NUMBER, POS_INT, POS_NUMBER, POSITIVE, Rule, among, either, node, nullable, one_of, or_null, rule

SPLITS = ("train", "test")  # of every image dataset (data.py): fid.split's values
GENERATORS = {"raw": "G", "ema": "G_ema"}  # gl-eval's which=: name in fid.jsonl -> key in a checkpoint

# ---------------------------------------------------------------- gl-train: the train node


@dataclass
class SharedTrain:
    """train.* of every run kind."""
    device: Any = rule(DEVICE)
    iters: Any = rule(POS_INT)
    batch_size: Any = rule()        # null only where a kind uses its data whole: kinds/*.py
    num_seeds: Any = rule(POS_INT)
    log_every: Any = rule(POS_INT)
    log_seconds: Any = rule(POS_NUMBER)
    sample_every: Any = rule(POS_INT)
    ckpt_every: Any = rule(POS_INT)
    keep_checkpoints: Any = rule(KEEP)
    cpu_threads: Any = rule(nullable(POS_INT))


@dataclass
class ImageTrain:
    """train.* read by the image GANs only (image_gan.py)."""
    n_dis: Any = rule(POS_INT)
    lr_decay_start: Any = rule(nullable(NONNEG_INT))  # checked after iters: the recipes interpolate it
    ema: Any = rule(EMA)
    cuda_graph: Any = rule(BOOL)
    precision: Any = rule(one_of("fp32", "tf32", "bf16"))
    channels_last: Any = rule(BOOL)
    fid_every: Any = rule(nullable(POS_INT))
    fid_samples: Any = rule(POS_INT)


@dataclass
class SyntheticTrain:
    """train.* read by the synthetic MLP GANs only (synthetic.py)."""
    cpu_kernel: Any = rule(BOOL)
    optimal_d: Any = rule(BOOL)
    d_converge_steps: Any = rule(POS_INT)


@dataclass
class Train(SyntheticTrain, ImageTrain, SharedTrain):
    """One `train` node for every kind, so that every key keeps its path (`train.cuda_graph`);
    fields in the order SharedTrain, ImageTrain, SyntheticTrain (the reverse of the bases)."""


# ---------------------------------------------------------------- the fid node (gl-train, gl-eval)

@dataclass
class Kid:
    subsets: Any = rule(POSITIVE)
    subset_size: Any = rule(POSITIVE)
    degree: Any = rule(POSITIVE)
    coef0: Any = rule(NUMBER)
    seed: Any = rule(NONNEG_INT)


@dataclass
class Neighbours:
    k: Any = rule(POSITIVE)


@dataclass
class Prd:
    clusters: Any = rule(POSITIVE)
    angles: Any = rule(POSITIVE)
    runs: Any = rule(POSITIVE)
    beta: Any = rule(POSITIVE)
    seed: Any = rule(NONNEG_INT)


def _reals_seed(f) -> str | None:
    if f.get("reals") == "random" and not isinstance(f.get("reals_seed"), int):
        return f"fid.reals_seed={f.get('reals_seed')}: fid.reals=random needs an integer seed"
    return None


def _metrics(f) -> str | None:
    bad = [m for m in f.get("metrics") or [] if m not in _METRICS]
    return f"fid.metrics: {bad[0]} is not a metric; expected any of {', '.join(_METRICS)}" if bad else None


def _inception_dims():  # pytorch-fid imports torchvision (seconds): read only when checking
    return importlib.import_module("pytorch_fid.inception").InceptionV3.BLOCK_INDEX_BY_DIM


SPLIT = Rule("null (the dataset's fid_split) or " + " or ".join(SPLITS),
             lambda v: v is None or (isinstance(v, str) and v in SPLITS))


@dataclass
class Fid:
    """configs/fid/<protocol>.yaml (fid.py says what each key does)."""
    name: Any = rule()
    n_fake: Any = rule(POSITIVE)
    n_real: Any = rule(or_null(POSITIVE))
    split: Any = rule(SPLIT)
    reals: Any = rule(either("first", "random"))
    reals_seed: Any = rule()        # _reals_seed
    g_mode: Any = rule(either("train", "eval"))
    quantize: Any = rule(either("truncate", "round"))
    resize: Any = rule(either("pytorch", "tf1"))
    batch_size: Any = rule(POSITIVE)
    seed: Any = rule(NONNEG_INT)
    dims: Any = rule(among(_inception_dims))
    tf32: Any = rule(BOOL)
    inception_score: Any = rule(BOOL)
    is_n_fake: Any = rule(or_null(POSITIVE))
    is_logits: Any = rule(either("first1000", "all"))
    is_splits: Any = rule(POSITIVE)
    weights: Any = rule()
    weights_seed: Any = rule(NONNEG_INT)
    cache_dir: Any = rule()
    log_seconds: Any = rule(NONNEG_NUMBER)  # 0: a line after every batch
    inception_batch: Any = rule(or_null(POSITIVE))
    metrics: Any = rule()           # _metrics
    kid: Kid = node(Kid)
    prc: Neighbours = node(Neighbours)
    dc: Neighbours = node(Neighbours)
    prd: Prd = node(Prd)
    CHECKS: ClassVar = (_metrics, _reals_seed)
    NOT_SETTINGS: ClassVar = {"random_weights": "for a seeded random Inception pass fid.weights=random "
                                                "(fid.weights_seed=N)"}


# ---------------------------------------------------------------- gl-train

@dataclass
class TrainApp:
    """configs/config.yaml; the groups' own nodes (dataset, model, loss, optim) are checked by the
    run kinds (kinds/) and config.RULES."""
    seed: Any = rule(NONNEG_INT)
    width: Any = rule(POS_NUMBER)
    experiment_name: Any = rule()
    train: Train = node(Train)
    dataset: Any = rule()
    model: Any = rule()
    loss: Any = rule()
    optim: Any = rule()             # configs/recipe/<model>_<dataset>.yaml; absent: the model does not fit
    fid: Fid = node(Fid)
    OPEN: ClassVar = ("plan",)      # configs/experiment: read by gl-report and scripts/reproduce.py only


# ---------------------------------------------------------------- gl-eval

def _run_or_checkpoint(cfg) -> str | None:
    if (cfg.get("run") is None) == (cfg.get("checkpoint") is None):
        return "give exactly one of run=DIR or checkpoint=PATH"
    return None


STEP = Rule("final, all or a step number", lambda v: v in ("final", "all") or str(v).isdigit())
WHICH = Rule(" and/or ".join(GENERATORS),
             lambda v: OmegaConf.is_list(v) and len(v) > 0 and all(w in GENERATORS for w in v))


@dataclass
class Eval:
    """configs/eval.yaml"""
    run: Any = rule()
    checkpoint: Any = rule()
    step: Any = rule(STEP)
    which: Any = rule(WHICH)
    force: Any = rule(BOOL)
    device: Any = rule(DEVICE)
    data_root: Any = rule()
    width: Any = rule(POS_NUMBER)
    out: Any = rule()
    fid: Fid = node(Fid)
    dataset: Any = rule()           # groups: only for a bare state dict
    model: Any = rule()
    CHECKS: ClassVar = (_run_or_checkpoint,)


# ---------------------------------------------------------------- gl-landscape

LOSSES = Rule(lambda: f"a list of {', '.join(_LOSSES)}",  # read when checked: after any register()
              lambda v: OmegaConf.is_list(v) and all(x in _LOSSES for x in v))


@dataclass
class PathAngle:
    enabled: Any = rule(BOOL)
    alpha_min: Any = rule(NUMBER)
    alpha_max: Any = rule(NUMBER)
    points: Any = rule(POS_INT)


@dataclass
class Eig:
    enabled: Any = rule(BOOL)
    k: Any = rule(POS_INT)
    k_extreme: Any = rule(POS_INT)
    tol: Any = rule(NONNEG_NUMBER)
    tol_extreme: Any = rule(NONNEG_NUMBER)
    maxiter: Any = rule(POS_INT)
    maxiter_extreme: Any = rule(POS_INT)
    ncv: Any = rule(nullable(POS_INT))
    rel_zero: Any = rule(POS_NUMBER)


@dataclass
class Slices:
    enabled: Any = rule(BOOL)
    losses: Any = rule(LOSSES)
    points: Any = rule(POS_INT)
    d_steps: Any = rule(NONNEG_INT)
    d_lr: Any = rule(POS_NUMBER)
    max_points: Any = rule(nullable(POS_INT))


@dataclass
class SyntheticLandscape:
    dtype: Any = rule(one_of("float64", "float32"))
    max_points: Any = rule(nullable(POS_INT))


@dataclass
class ImageLandscape:
    n_real: Any = rule(POS_INT)
    chunk: Any = rule(nullable(POS_INT))
    data_root: Any = rule()
    sn_power_iters: Any = rule(NONNEG_INT)


@dataclass
class Landscape:
    """configs/landscape.yaml"""
    run_dir: Any = rule()           # required: landscape.open_run says so
    step: Any = rule(nullable(NONNEG_INT))
    start_step: Any = rule(NONNEG_INT)
    seed: Any = rule(NONNEG_INT)
    device: Any = rule(DEVICE)
    out_dir: Any = rule()
    seed_index: Any = rule(NONNEG_INT)
    path: PathAngle = node(PathAngle)
    eig: Eig = node(Eig)
    slices: Slices = node(Slices)
    synthetic: SyntheticLandscape = node(SyntheticLandscape)
    image: ImageLandscape = node(ImageLandscape)


def groups() -> list[str]:
    """The config groups (folders of configs/): a choice of one is not a misspelt key."""
    return sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir())


SCHEMAS = {"config_schema": TrainApp, "eval_schema": Eval, "landscape_schema": Landscape}
for _name, _schema in SCHEMAS.items():
    ConfigStore.instance().store(name=_name, node=_schema)
