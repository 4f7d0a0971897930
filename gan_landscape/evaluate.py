"""gl-eval: FID of the generators in run dirs (or of a bare state dict), see configs/eval.yaml.

Each result is appended to the run's fid.jsonl as soon as it exists; the final step's results also
go to summary.json. A checkpoint already scored under the same protocol is skipped unless force.
"""
import json
import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from . import checkpoint, data, fid
from .rundir import RunDir

log = logging.getLogger("gl-eval")
# An absolute path: relative to a module, Hydra would look for a Python package named configs.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")

# Fields of a fid.jsonl record that identify a measurement; the rest (fid, seconds...) is result.
KEY = ("step", "generator", "protocol", "dataset", "split", "n_real", "n_fake", "image_size",
       "dims", "g_mode", "quantize", "batch_size", "seed", "weights_sha256")
GENERATORS = {"raw": "G", "ema": "G_ema"}  # name in fid.jsonl -> key in the checkpoint


class EvalError(RuntimeError):
    pass


def build_generator(cfg):
    from .nets import build_generator as build
    return build(cfg)


def find_runs(root) -> list[Path]:
    """root itself if it is a run dir, else every run dir below it (found by their checkpoints/)."""
    root = Path(root)
    if not root.is_dir():
        raise EvalError(f"run={root}: no such directory")
    runs = sorted(p.parent for p in root.rglob("checkpoints") if checkpoint.list_steps(p.parent))
    if not runs:
        raise EvalError(f"run={root}: no checkpoints/step_*.pt in it or below it")
    image = [r for r in runs if not _synthetic(r)]
    if len(image) < len(runs):  # a mixed sweep: FID means nothing for the 1-D/2-D runs
        log.info(f"run={root}: skipped {len(runs) - len(image)} synthetic run(s), FID is for images")
    if not image:
        raise EvalError(f"run={root}: only synthetic runs here; FID is for image datasets")
    return image


def _synthetic(run: Path) -> bool:
    cfg = run / "config.yaml"
    return cfg.exists() and OmegaConf.load(cfg).dataset.get("kind") == "synthetic"


def select_steps(run: Path, step) -> list[int]:
    steps = checkpoint.list_steps(run)
    if step == "final":
        return steps[-1:]
    if step == "all":
        return steps
    if not str(step).isdigit():
        raise EvalError(f"step={step}: expected final, all or a step number")
    if int(step) not in steps:
        raise EvalError(f"{run}: no checkpoint for step {step} (steps: {steps[0]}..{steps[-1]})")
    return [int(step)]


def run_config(ckpt: dict, cfg) -> DictConfig:
    """The run's own config (model, width, dataset), scored under gl-eval's fid protocol."""
    rc = OmegaConf.create(ckpt["config"])
    rc.fid = OmegaConf.to_container(cfg.fid, resolve=True)
    if cfg.get("dataset") is not None:  # e.g. a moved data root
        rc.dataset = OmegaConf.merge(rc.dataset, cfg.dataset)
    return rc


def load_generator(rc, state: dict, device) -> torch.nn.Module:
    try:
        G = build_generator(rc).to(device)
    except ValueError as e:  # unknown model name, unsupported image size
        raise EvalError(str(e)) from None
    try:
        G.load_state_dict(state)
    except RuntimeError as e:  # the first specific line: which keys are missing or mis-shaped
        lines = str(e).splitlines()
        raise EvalError(f"generator weights do not fit model={rc.model.get('name')} "
                        f"width={rc.width}: {lines[min(1, len(lines) - 1)].strip()}") from None
    return G


def scored_keys(run: Path) -> set:
    path = run / "fid.jsonl"
    if not path.exists():
        return set()
    recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return {tuple(r.get(k) for k in KEY) for r in recs}


def append_record(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def update_summary(run: Path, rec: dict) -> None:
    """summary.json's fid: the latest final-step result per generator, under one protocol."""
    rd = RunDir(run)
    old = rd.summary().get("fid") or {}
    same = (old.get("protocol"), old.get("step")) == (rec["protocol"], rec["step"])
    new = {**(old if same else {}), "protocol": rec["protocol"], "step": rec["step"],
           rec["generator"]: rec["fid"]}
    if "is_mean" in rec:
        new[f"is_{rec['generator']}"] = rec["is_mean"]
    rd.update_summary(fid=new)


def score_checkpoint(run: Path, step: int, cfg, device, done: set, final: int) -> int:
    """Score the generators of one checkpoint not yet in fid.jsonl; returns how many were scored."""
    ckpt = checkpoint.load(checkpoint.path_for(run, step))
    rc = run_config(ckpt, cfg)
    inc = fid.load_inception(rc.fid.weights, device, rc.fid.dims)
    proto = fid.protocol(rc, inc, fid.reference_stats(rc, inc), rc.fid.n_fake)
    n = 0
    for name in cfg.which:
        if name not in GENERATORS:
            raise EvalError(f"which={list(cfg.which)}: expected raw and/or ema")
        state = ckpt.get(GENERATORS[name])
        key = tuple({**proto, "step": step, "generator": name}.get(k) for k in KEY)
        if state is None or (key in done and not cfg.force):
            if state is not None:
                log.info(f"{run} step {step} {name}: already scored ({proto['protocol']}), skipped")
            continue
        rec = {"step": step, "generator": name,
               **fid.score_generator(load_generator(rc, state, device), rc)}
        append_record(run / "fid.jsonl", rec)
        if step == final:
            update_summary(run, rec)
        log.info(f"{run} step {step} {name}: FID {rec['fid']:.3f} ({rec['protocol']}, "
                 f"{rec['n_fake']} fakes vs {rec['n_real']} {rec['split']}, "
                 f"{rec['seconds']:.1f} s)")
        n += 1
    return n


def score_runs(cfg, device) -> int:
    n = 0
    for run in find_runs(cfg.run):
        done, final = scored_keys(run), checkpoint.list_steps(run)[-1]
        for step in select_steps(run, cfg.step):
            n += score_checkpoint(run, step, cfg, device, done, final)
    return n


def score_file(cfg, device) -> int:
    """checkpoint=PATH: one of our checkpoints (scored into its run dir) or a bare G state dict."""
    path = Path(cfg.checkpoint)
    obj = checkpoint.load(path)
    if isinstance(obj, dict) and "config" in obj and "G" in obj:
        run = path.parent.parent
        if path.parent.name != "checkpoints" or obj["step"] not in checkpoint.list_steps(run):
            raise EvalError(f"{path}: a training checkpoint outside its run's checkpoints/ dir")
        return score_checkpoint(run, obj["step"], cfg, device, scored_keys(run),
                                checkpoint.list_steps(run)[-1])
    if cfg.get("model") is None or cfg.get("dataset") is None:
        raise EvalError(f"{path} is a bare state dict: say which net it is, e.g. "
                        f"model=cnn width=0.25 dataset=cifar10")
    G = load_generator(cfg, obj, device)
    rec = {"checkpoint": str(path), "generator": "raw", **fid.score_generator(G, cfg)}
    if cfg.out:
        append_record(Path(cfg.out), rec)
    log.info(json.dumps(rec))
    return 1


def evaluate(cfg) -> int:
    """Score what cfg names; returns the number of new results."""
    if (cfg.run is None) == (cfg.checkpoint is None):
        raise EvalError("give exactly one of run=DIR or checkpoint=PATH")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") \
        if cfg.device == "auto" else torch.device(cfg.device)
    return score_runs(cfg, device) if cfg.run is not None else score_file(cfg, device)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        n = evaluate(cfg)
    except (EvalError, fid.FIDError, checkpoint.CheckpointError, data.DataError,
            FileNotFoundError) as e:
        sys.exit(f"gl-eval: {e}")
    log.info(f"gl-eval: {n} new result(s)")
