"""gl-eval: FID of the generators in run dirs (or of a bare state dict), see configs/eval.yaml.

`run=` takes a run dir exactly as gl-train printed it, or any dir above run dirs (a sweep); run dirs
are found below it at any depth by their checkpoints/. Each result is appended to the run's
fid.jsonl as soon as it exists; the final step's results also go to summary.json. A checkpoint
already scored under the same protocol (its `protocol_key`) is skipped unless force=true.

Runs that did not finish (failed, diverged, still running) are skipped inside a sweep, with a
one-line note. A run named directly is scored whatever its status: a diverged run's newest
checkpoint is its last good one (the trainer never saves non-finite weights).
"""
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from gan_landscape.runs import checkpoint, interrupt
from gan_landscape import cli, kinds
from gan_landscape.metrics import fid
from gan_landscape.config import rules, schema
from gan_landscape.nets import build_generator
from gan_landscape.files import append_jsonl, read_jsonl
from gan_landscape.runs.rundir import RunDir, find_run_dirs

log = logging.getLogger("gl-eval")
GENERATORS = schema.GENERATORS  # name in fid.jsonl -> key in the checkpoint


class EvalError(cli.UserError):
    pass


@dataclass
class Tally:
    """What one gl-eval call did, for its final line and exit status."""
    written: dict = field(default_factory=dict)  # file -> results appended to it
    skipped: list = field(default_factory=list)  # runs not scored, with why
    failed: list = field(default_factory=list)   # checkpoints that could not be scored, with why
    printed: int = 0                             # bare state dict results only logged (no out=)

    @property
    def n(self) -> int:
        return sum(self.written.values())

    def line(self, where: str) -> str:
        files = sorted(self.written)
        if not files and self.printed:
            out = f"gl-eval: {self.printed} result(s) printed above, not saved (out=FILE keeps them)"
        elif not files:
            out = f"gl-eval: no new results under {where}"
        elif len(files) == 1:
            out = f"gl-eval: {self.n} new result(s) in {files[0]}"
        else:
            out = f"gl-eval: {self.n} new result(s) in the fid.jsonl of {len(files)} runs under {where}"
        if self.skipped:
            out += f"; {len(self.skipped)} run(s) skipped (not finished or not images)"
        if self.failed:
            out += f"; {len(self.failed)} checkpoint(s) FAILED: {self.failed[0]}"
        return out


# ---------------------------------------------------------------- finding what to score

def find_runs(root) -> list[Path]:
    """root itself if it is a run dir, else every run dir below it that has checkpoints."""
    root = Path(root)
    if root.is_file():
        raise EvalError(f"run={root} is a file; pass a checkpoint file as checkpoint={root}")
    if not root.is_dir():
        raise EvalError(f"run={root}: no such directory")
    runs = [p for p in find_run_dirs(root) if checkpoint.list_steps(p)]
    if not runs:
        raise EvalError(f"run={root}: no checkpoints/step_*.pt in it or below it")
    return runs


def select_steps(run: Path, step) -> list[int]:
    steps = checkpoint.list_steps(run)
    if step == "final":
        return steps[-1:]
    if step == "all":
        log.info(f"{run}: steps {_steps_text(steps)} (the checkpoints gl-train kept: train.keep_checkpoints)")
        return steps
    if not str(step).isdigit():
        raise EvalError(f"step={step}: expected final, all or a step number")
    if int(step) not in steps:
        raise EvalError(f"{run}: no checkpoint for step {step}; it has {_steps_text(steps)} "
                        f"(gl-train keeps step 0 and the newest train.keep_checkpoints; all keeps every one)")
    return [int(step)]


def _steps_text(steps: list[int]) -> str:
    shown = [str(s) for s in steps] if len(steps) <= 12 else [*map(str, steps[:5]), "...", *map(str, steps[-5:])]
    return ", ".join(shown)


def run_config(run: Path, cfg) -> DictConfig:
    """The run's own config (model, width, dataset), scored under gl-eval's fid protocol."""
    path = run / "config.yaml"
    if path.exists():
        rc = OmegaConf.load(path)
    else:  # an older run dir: the config travels in every checkpoint too
        newest = checkpoint.path_for(run, checkpoint.list_steps(run)[-1])
        rc = OmegaConf.create(checkpoint.load(newest)["config"])
    rc.fid = OmegaConf.to_container(cfg.fid, resolve=True)
    if cfg.data_root is not None:  # the data moved since training
        rc.dataset.root = str(cfg.data_root)
    return rc


def _scores_images(rc) -> bool:
    try:
        return kinds.scores_images(kinds.of(rc))
    except cli.ConfigError:  # a run of a kind this installation does not have
        return False


def skip_reason(run: Path, rc, named: bool) -> str | None:
    """Why a run found below a sweep dir is not scored; None to score it."""
    if not _scores_images(rc):
        return f"{rc.dataset.name} is not an image dataset"
    status = RunDir(run).summary().get("status")
    if status in (None, "finished"):
        return None
    if named:
        log.info(f"{run}: status {status}; scoring it as asked"
                 + (" (its newest checkpoint is its last good one)" if status == "diverged" else ""))
        return None
    return f"status {status}"


# ---------------------------------------------------------------- scoring

def load_generator(rc, state: dict, device):
    G = build_generator(rc).to(device)  # an unknown model or image size is a ConfigError: one line
    try:
        G.load_state_dict(state)
    except RuntimeError as e:  # the first specific line: which keys are missing or mis-shaped
        lines = str(e).splitlines()
        raise EvalError(f"generator weights do not fit model={rc.model.get('name')} "
                        f"width={rc.width}: {lines[min(1, len(lines) - 1)].strip()}") from None
    return G


read_records, append_record = read_jsonl, append_jsonl


def update_summary(run: Path, rec: dict) -> None:
    """summary.json's fid: the latest final-step result per generator, under one protocol."""
    rd = RunDir(run)
    old = rd.summary().get("fid") or {}
    same = (old.get("protocol_key"), old.get("step")) == (rec["protocol_key"], rec["step"])
    new = {**(old if same else {}), "protocol": rec["protocol"], "protocol_key": rec["protocol_key"],
           "step": rec["step"], rec["generator"]: rec["fid"]}
    if "is_mean" in rec:
        new[f"is_{rec['generator']}"] = rec["is_mean"]
    rd.add_to_summary(fid=new)


def score_checkpoint(run: Path, step: int, rc, cfg, device, tally: Tally) -> None:
    """Score the generators of one checkpoint not yet in fid.jsonl under this protocol."""
    proto = fid.protocol(rc)
    done = {(r.get("step"), r.get("generator"), r.get("protocol_key"))
            for r in read_records(run / "fid.jsonl")}
    todo = [g for g in cfg.which if cfg.force or (step, g, proto["protocol_key"]) not in done]
    if not todo:
        log.info(f"{run} step {step}: already scored ({proto['protocol']}), skipped")
        return
    ckpt = checkpoint.load(checkpoint.path_for(run, step))
    final = checkpoint.list_steps(run)[-1]
    for name in todo:
        state = ckpt.get(GENERATORS[name])
        if state is None:  # no EMA generator kept
            continue
        G = load_generator(rc, state, device)
        rec = {"step": step, "generator": name,
               **fid.score_generator(G, rc, desc=f"{run.name} step {step} {name}")}
        append_record(run / "fid.jsonl", rec)
        tally.written[run / "fid.jsonl"] = tally.written.get(run / "fid.jsonl", 0) + 1
        if step == final:
            update_summary(run, rec)
        log.info(f"{run} step {step} {name}: {fid.summary_line(rec)}")


def score_runs(cfg, device, tally: Tally) -> None:
    if cfg.get("dataset") is not None:
        raise EvalError("a run brings its own dataset; if its data moved, pass data_root=PATH")
    runs = find_runs(cfg.run)
    named = len(runs) == 1 and runs[0].resolve() == Path(cfg.run).resolve()
    for i, run in enumerate(runs, 1):
        rc = run_config(run, cfg)
        reason = skip_reason(run, rc, named)
        if reason:
            log.info(f"[{i}/{len(runs)}] {run}: skipped ({reason})")
            tally.skipped.append(f"{run}: {reason}")
            continue
        log.info(f"[{i}/{len(runs)}] {run}")
        for step in select_steps(run, cfg.step):
            try:
                score_checkpoint(run, step, rc, cfg, device, tally)
            except (checkpoint.CheckpointError, EvalError, fid.FIDError) as e:
                log.error(f"{run} step {step}: {e}")
                tally.failed.append(f"{run} step {step}: {e}")


def score_file(cfg, device, tally: Tally) -> None:
    """checkpoint=PATH: one of our checkpoints (scored into its run dir) or a bare G state dict."""
    path = Path(cfg.checkpoint)
    try:
        obj = checkpoint.load(path)
    except checkpoint.CheckpointError as e:  # missing or corrupt: the file named is the input
        raise EvalError(str(e)) from None
    if isinstance(obj, dict) and "config" in obj and "G" in obj:
        run = path.parent.parent
        if path.parent.name != "checkpoints" or obj["step"] not in checkpoint.list_steps(run):
            raise EvalError(f"{path}: a training checkpoint outside its run's checkpoints/ dir")
        return score_checkpoint(run, obj["step"], run_config(run, cfg), cfg, device, tally)
    if cfg.get("model") is None or cfg.get("dataset") is None:
        raise EvalError(f"{path} is a bare state dict: say which net it is, e.g. "
                        f"model=cnn width=0.25 dataset=cifar10")
    G = load_generator(cfg, obj, device)
    rec = {"checkpoint": str(path), "generator": "raw", **fid.score_generator(G, cfg)}
    log.info(json.dumps(rec))
    if cfg.out:
        append_record(Path(cfg.out), rec)
        tally.written[Path(cfg.out)] = 1
    else:
        tally.printed += 1


def evaluate(cfg) -> Tally:
    """Score what cfg names; returns what was written, skipped and failed."""
    rules.check(cfg, schema.Eval, error=EvalError)  # every value (fid included): one line
    fid.weights_file(cfg.fid)  # a missing weights file fails here, before any work
    device = cli.resolve_device(cfg.device, key="device")
    tally = Tally()
    (score_runs if cfg.run is not None else score_file)(cfg, device, tally)
    return tally


@hydra.main(version_base="1.3", config_path=cli.CONFIG_DIR, config_name="eval")
def _main(cfg: DictConfig) -> None:
    tally = interrupt.stop_on_ctrl_c("gl-eval", cli.exit_on_user_error, "gl-eval", evaluate, cfg)
    log.info(tally.line(str(cfg.run if cfg.run is not None else cfg.checkpoint)))
    if tally.failed:
        sys.exit(1)


def main() -> None:
    rules.check_argv("gl-eval", schema.Eval, schema.groups())
    _main()


if __name__ == "__main__":
    main()
