"""What a run is: its identity (a hash of the config keys that define its result) and its name.

The identity is the resolved config minus operational keys (where it runs, how often it logs, where
files live, switches that replay the same arithmetic), with the data folder replaced by a
fingerprint of the data files: moving the data is the same run, pointing at a subset is another.
A run dir is bound to one identity; gl-train refuses to resume or skip a dir that holds another.

The name is what a person reads and types back: `<dataset>-<model>-w<width>-<loss>-s<seeds>`, then
any other result-defining override of the command line as `-<key>_<value>`, no '=' or ','. Runs
are grouped by experiment: runs/<experiment>/<name> (single runs), sweeps/<experiment>/<name>.
"""
import hashlib
import json
import re

from omegaconf import OmegaConf

# Keys (dotted prefixes) that do not change what a run computes.
OPERATIONAL = (
    "hydra", "experiment_name", "plan", "fid",
    "train.device", "train.cuda_graph", "train.cpu_threads", "train.log_every", "train.log_seconds",
    "train.sample_every", "train.ckpt_every", "train.keep_checkpoints", "train.fid_every",
    "train.fid_samples",
    "dataset.root", "dataset.download", "dataset.check_integrity", "dataset.num_workers",
)
# Overrides already spelled out by the base of a run's name.
NAMED = ("dataset", "dataset.category", "model", "width", "loss", "seed", "train.num_seeds", "experiment")


def _operational(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in OPERATIONAL)


def _strip(node, prefix=""):
    if not isinstance(node, dict):
        return node
    return {k: _strip(v, f"{prefix}{k}.") for k, v in node.items() if not _operational(f"{prefix}{k}")}


def defining(cfg, data_fingerprint: str | None = None) -> dict:
    """The part of a resolved config that defines the result, as plain data."""
    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    out = _strip(plain)
    if data_fingerprint is not None:
        out["data_fingerprint"] = data_fingerprint
    return out


def digest(defining_dict: dict) -> str:
    text = json.dumps(defining_dict, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(a: dict, b: dict, prefix="") -> list[str]:
    """`key: a vs b` for every leaf that differs (for the one-line refusal)."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(x, dict) and isinstance(y, dict):
            out += differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}: {x} vs {y}")
    return out


# ---------------------------------------------------------------- names

def _clean(value) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "_", str(value)).strip("_") or "_"


def seeds_label(seed: int, num_seeds: int) -> str:
    return f"s{seed}" if num_seeds <= 1 else f"s{seed}-{seed + num_seeds - 1}"


def base_name(cfg, template: str) -> str:
    """The kind's NAME template (kinds/) filled from the config; odd values are made file-safe."""
    ds, width = cfg.dataset, cfg.get("width", 1.0)
    dataset = ds.name + (f"-{_clean(ds.category)}" if ds.get("category") else "")
    width = f"{float(width):g}" if isinstance(width, (int, float)) else _clean(width)
    seed, num = cfg.get("seed", 0), cfg.train.get("num_seeds", 1)
    seeds = seeds_label(seed, num) if isinstance(seed, int) and isinstance(num, int) else \
        f"s{_clean(seed)}-n{_clean(num)}"
    return template.format(dataset=dataset, model=cfg.model.name, width=width, loss=cfg.loss.name,
                           seeds=seeds)


def extra_overrides(overrides) -> list[str]:
    """`key_value` for each command-line override that defines the result and is not in the base."""
    out = []
    for o in overrides:
        key, _, value = str(o).lstrip("+~").partition("=")
        if key in NAMED or _operational(key) or not value:
            continue
        out.append(f"{_clean(key.rsplit('.', 1)[-1])}_{_clean(value)}")
    return sorted(out)


def run_name(cfg, template: str) -> str:
    """The run's readable name: the base, then the other result-defining command-line overrides."""
    task = OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or []
    return "-".join([base_name(cfg, template), *extra_overrides(task)])
