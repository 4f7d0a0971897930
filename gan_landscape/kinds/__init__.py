"""Run kinds: what the runs of a dataset are, one module each, looked up by `dataset.kind`.

A kind module owns, for its runs: the config rules (`RULES`, checked by config.validate) and the
checks that need its own registries (`check`), the data's fingerprint and the arithmetic that will
train it (`fingerprint`, `arithmetic`: parts of a run's identity),
the trainable (`build`, the `Trainable` protocol in runs/job.py), the run's readable name (`NAME`),
whether a stack of seeds gets one run dir per seed (`SPLIT_SEEDS`), its default CPU threads, and
what the other commands need of it (`IMAGES`: gl-eval and FID score it). Built-in kinds live here;
`dataset.kind: mypkg.mykind` names a module anywhere on the path, so a new kind is one module and
its YAML (tests/test_kinds.py adds one from a temporary package and trains it end to end).
"""
import importlib
from types import ModuleType

from gan_landscape.cli import ConfigError

BUILTIN = ("image", "synthetic", "population")
REQUIRED = ("RULES", "NAME", "check", "build")


def get(name) -> ModuleType:
    """The kind module for `dataset.kind` (a built-in name or a dotted module path)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"dataset.kind={name}: expected one of {', '.join(BUILTIN)} or a module path")
    module = name if "." in name else f"{__name__}.{name}"
    try:
        kind = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):  # the kind itself is missing, not one of its imports
            raise ConfigError(f"dataset.kind={name}: expected one of {', '.join(BUILTIN)} "
                              f"or an importable module path") from None
        raise
    missing = [a for a in REQUIRED if not hasattr(kind, a)]
    if missing:
        raise ConfigError(f"dataset.kind={name}: module {module} lacks {', '.join(missing)}")
    return kind


def of(cfg) -> ModuleType:
    return get(cfg.dataset.get("kind"))


def fingerprint(kind: ModuleType, cfg) -> str | None:
    """The data's fingerprint for the run's identity (None: the config alone defines the data)."""
    return kind.fingerprint(cfg) if hasattr(kind, "fingerprint") else None


def arithmetic(kind: ModuleType, cfg, device) -> str | None:
    """The implementation that trains this config on `device`, where it rounds differently from the
    reference one (None: the reference, or what the config already names)."""
    return kind.arithmetic(cfg, device) if hasattr(kind, "arithmetic") else None


def split_seeds(kind: ModuleType) -> bool:
    return getattr(kind, "SPLIT_SEEDS", False)


def cpu_threads(kind: ModuleType):
    return getattr(kind, "CPU_THREADS", None)


def scores_images(kind: ModuleType) -> bool:
    return getattr(kind, "IMAGES", False)


def validate(cfg) -> ModuleType:
    """The whole config checked at the door (config.validate with the kind's rules); its kind."""
    from gan_landscape.config import validate as check
    kind = of(cfg)
    check(cfg, kind)
    return kind
