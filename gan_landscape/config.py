"""gl-train's composed config checked at the door, before any work or disk write.

Each failure is one `ConfigError` line naming the key, the value given and what is allowed. Hydra
types an override by its form (`width=abc` is the string "abc", `seed=1.5` a float, `x=yes` a
string), so types are checked here, not left to fail deep inside training.
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

from . import losses, synthetic
from .cli import CONFIG_DIR, DEVICE_NAME, ConfigError
from .mlp import ACTIVATIONS

_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    allowed: str                     # what the one line says is allowed
    ok: Callable[[object], bool]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def nullable(rule: Rule) -> Rule:
    return Rule(f"null or {rule.allowed}", lambda v: v is None or rule.ok(v))


def one_of(*options: str) -> Rule:
    return Rule(f"one of {', '.join(options)}", lambda v: isinstance(v, str) and v in options)


POS_INT = Rule("an integer > 0", lambda v: _is_int(v) and v > 0)
NONNEG_INT = Rule("an integer >= 0", lambda v: _is_int(v) and v >= 0)
POS_NUMBER = Rule("a number > 0", lambda v: _is_number(v) and v > 0)
FRACTION = Rule("a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1)
BOOL = Rule("true or false", lambda v: isinstance(v, bool))
DEVICE = Rule("auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and bool(DEVICE_NAME.match(v)))
EMA = Rule("null or a number strictly between 0 and 1", lambda v: v is None or (_is_number(v) and 0 < v < 1))

RULES = {  # checked where the key exists in the composed config
    "seed": NONNEG_INT, "width": POS_NUMBER,
    "train.device": DEVICE, "train.iters": POS_INT, "train.n_dis": POS_INT, "train.num_seeds": POS_INT,
    "train.log_every": POS_INT, "train.log_seconds": POS_NUMBER, "train.sample_every": POS_INT,
    "train.ckpt_every": POS_INT, "train.ema": EMA, "train.precision": one_of("fp32", "tf32", "bf16"),
    "train.cuda_graph": BOOL, "train.cpu_kernel": BOOL, "train.channels_last": BOOL,
    "train.optimal_d": BOOL, "train.cpu_threads": nullable(POS_INT), "train.fid_every": nullable(POS_INT),
    "train.fid_samples": POS_INT, "train.d_converge_steps": POS_INT,
    "optim.g_lr": POS_NUMBER, "optim.d_lr": POS_NUMBER,
    "model.z_dim": POS_INT, "model.base": nullable(POS_INT), "model.d_ratio": nullable(POS_NUMBER),
    "model.bottleneck": BOOL, "model.g_act": one_of(*ACTIVATIONS), "model.d_act": one_of(*ACTIVATIONS),
    "model.d_last_bias": BOOL,
}
KIND_RULES = {
    "image": {"dataset.image_size": POS_INT, "dataset.num_workers": NONNEG_INT, "dataset.download": BOOL,
              "dataset.check_integrity": BOOL, "dataset.resident": BOOL},
    "synthetic": {"dataset.num_points": POS_INT, "dataset.d_steps": POS_INT, "dataset.g_steps": POS_INT,
                  "dataset.mode_radius": POS_NUMBER, "dataset.cover_frac": FRACTION,
                  "dataset.average_d_terms": BOOL},
    "population": {},  # Li et al.'s model (first_order.py): exact population dynamics, no batches
}


def validate(cfg) -> None:
    """Raise ConfigError (one line) for the first key of `cfg` that is of the wrong type, out of
    range, or names something unknown; return None when the config can be run."""
    kind = _check_names(cfg)
    for key, rule in {**RULES, **KIND_RULES[kind]}.items():
        _check(cfg, key, rule)
    whole = kind == "population" or \
        (kind == "synthetic" and synthetic.synthetic_data(cfg.dataset).full_batch)  # no minibatches
    _check(cfg, "train.batch_size", nullable(POS_INT) if whole else POS_INT)
    iters = cfg.train.iters
    _check(cfg, "train.lr_decay_start", Rule(f"null or an integer in [0, train.iters={iters})",
                                             lambda v: v is None or (_is_int(v) and 0 <= v < iters)))


def _check_names(cfg) -> str:
    """The loss, dataset and model are known and the model fits the dataset; returns the kind."""
    losses.get_loss(cfg.loss.name)
    ds = cfg.dataset
    kind = ds.get("kind")
    if kind not in KIND_RULES:
        raise ConfigError(f"dataset.kind={_show(kind)}: expected one of {', '.join(KIND_RULES)}")
    if kind == "synthetic":
        synthetic.synthetic_data(ds)
    elif kind == "image":
        from . import data  # torchvision: 3 s of imports a synthetic run does not need
        data.image_data(ds)
    if "optim" not in cfg:  # configs/config.yaml: `optional optim: ${model}_${dataset}`
        fits = models_for(ds.name)
        hint = f"models for {ds.name}: {', '.join(fits)} (set model=...)" if fits else \
            f"no model has configs/optim/<model>_{ds.name}.yaml yet (its optimiser and train settings)"
        raise ConfigError(f"model={cfg.model.name} does not fit dataset={ds.name}; {hint}")
    return kind


def models_for(dataset: str) -> list[str]:
    """The models with an optimiser file for `dataset`: configs/optim/<model>_<dataset>.yaml."""
    root = Path(CONFIG_DIR)
    models = {p.stem for p in (root / "model").glob("*.yaml")}
    found = [p.name.removesuffix(f"_{dataset}.yaml") for p in (root / "optim").glob(f"*_{dataset}.yaml")]
    return sorted(m for m in found if m in models)


def _check(cfg, key: str, rule: Rule) -> None:
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if value is not _ABSENT and not rule.ok(value):
        raise ConfigError(f"{key}={_show(value)}: expected {rule.allowed}")


def _show(v) -> str:
    """As Hydra's override grammar writes it: a string that reads as another type is quoted."""
    if v is None or isinstance(v, bool):
        return {None: "null", True: "true", False: "false"}[v]
    if isinstance(v, str) and (v.lower() in ("true", "false", "null") or _reads_as_number(v)):
        return f"'{v}'"
    return str(v)


def _reads_as_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False
