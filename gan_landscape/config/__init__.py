"""gl-train's composed config checked at the door, before any work or disk write.

Each failure is one `ConfigError` line naming the key, the value given and what is allowed. Hydra
types an override by its form (`width=abc` is the string "abc", `seed=1.5` a float, `x=yes` a
string), so types are checked here, not left to fail deep inside training. The rules of the keys
configs/config.yaml itself holds (seed, width, train.*, fid.*) sit beside their fields in schema.py;
here are the groups' open nodes (RULES), the run kind's rules and the checks across nodes (the
model fits the dataset, the width leaves every layer a unit).
"""
import logging
from pathlib import Path

from gan_landscape import losses
from gan_landscape.config import rules, schema
from gan_landscape.cli import CONFIG_DIR, ConfigError
from gan_landscape.nets.mlp import ACTIVATIONS
# Re-exported: the run kinds' RULES (kinds/) are written with these.
from gan_landscape.config.rules import BOOL, DEVICE, EMA, FRACTION, KEEP, NONNEG_INT, POS_INT, POS_NUMBER, Rule, check_key, nullable, one_of
from gan_landscape.config.rules import show as _show

log = logging.getLogger("gl-train")

# The groups' nodes that schema.TrainApp leaves open (a model's or recipe's keys vary with it),
# checked where the key exists; each kind adds its own (kinds/). The rest: schema.py.
RULES = {
    "optim.g_lr": POS_NUMBER, "optim.d_lr": POS_NUMBER,
    "model.z_dim": POS_INT, "model.base": nullable(POS_INT), "model.d_ratio": nullable(POS_NUMBER),
    "model.bottleneck": BOOL, "model.g_act": one_of(*ACTIVATIONS), "model.d_act": one_of(*ACTIVATIONS),
    "model.d_last_bias": BOOL,
}


def validate(cfg, kind) -> None:
    """Raise ConfigError (one line) for the first key of `cfg` that is of the wrong type, out of
    range, or names something unknown; return None when the config can be run. `kind` is the run
    kind's module (kinds/): its rules and its own checks of names."""
    losses.get_loss(cfg.loss.name)
    kind.check(cfg)
    _check_fit(cfg)
    rules.check(cfg, schema.TrainApp, skip=kind.RULES)
    for key, rule in {**RULES, **kind.RULES}.items():
        check_key(cfg, key, rule)
    start, iters = cfg.train.get("lr_decay_start"), cfg.train.iters
    if start is not None and start >= iters:  # a shortened run of an explicit start: no decay, not an error
        log.warning(f"train.lr_decay_start={start} is past the last iteration (train.iters={iters}): "
                    "no learning-rate decay")
    _check_width(cfg)


def _check_width(cfg) -> None:
    """The nets round `width x units` per layer and would clamp a 0 to 1 unit: another net than
    the width names (and a run dir named w1e-09). One line instead, with the narrowest width."""
    width = cfg.get("width")
    if not POS_NUMBER.ok(width) or _narrowest(cfg, width) is None or _narrowest(cfg, width) >= 1:
        return
    lo, hi = width, 1.0
    while _narrowest(cfg, hi) < 1:
        hi *= 2
    for _ in range(60):  # units grow with the width: bisect for the narrowest width that keeps 1
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _narrowest(cfg, mid) >= 1 else (mid, hi)
    shown = float(f"{hi:.2g}")
    while _narrowest(cfg, shown) < 1:
        shown = float(f"{shown * 1.05:.2g}")
    raise ConfigError(f"width={_show(width)}: a layer of model={cfg.model.name} would have 0 units; "
                      f"expected width >= {shown:g}")


def _narrowest(cfg, width: float) -> int | None:
    """Units of the model's thinnest layer at `width` (as nets/ and mlp.py round them); None for a
    model without a width (the population dynamics) or one this check does not know."""
    m = cfg.model
    if "g_hidden" in m:  # mlp.scaled
        hidden = [*m.g_hidden, *m.d_hidden]
        return min(round(h * width) for h in hidden) if hidden else None
    if m.name == "resnet":  # nets/resnet.py: D has d_ratio of G's channels
        from gan_landscape.nets.resnet import PAPER_BASE, PAPER_D_RATIO
        size = cfg.dataset.get("image_size")
        if m.base is None and size not in PAPER_BASE:
            return None
        nf = round((PAPER_BASE[size] if m.base is None else m.base) * width)
        ratio = PAPER_D_RATIO.get(size, 1.0) if m.d_ratio is None else m.d_ratio
        return min(nf, int(nf * ratio))
    return round(m.base * width) if isinstance(m.get("base"), int) else None


def _check_fit(cfg) -> None:
    """The model fits the dataset: configs/recipe has the pair's optimiser and train settings."""
    ds = cfg.dataset
    if "optim" not in cfg:  # configs/config.yaml: `optional recipe: ${model}_${dataset}`
        fits = models_for(ds.name)
        hint = f"models for {ds.name}: {', '.join(fits)} (set model=...)" if fits else \
            f"no model has configs/recipe/<model>_{ds.name}.yaml yet (its optimiser and train settings)"
        raise ConfigError(f"model={cfg.model.name} does not fit dataset={ds.name}; {hint}")


def models_for(dataset: str) -> list[str]:
    """The models with a recipe for `dataset`: configs/recipe/<model>_<dataset>.yaml."""
    root = Path(CONFIG_DIR)
    models = {p.stem for p in (root / "model").glob("*.yaml")}
    found = [p.name.removesuffix(f"_{dataset}.yaml") for p in (root / "recipe").glob(f"*_{dataset}.yaml")]
    return sorted(m for m in found if m in models)
