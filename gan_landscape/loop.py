"""The one run skeleton: resume -> step -> log / sample / checkpoint -> finish or diverge.

Every kind of run is a *trainable* that trains one or more *members*, each with its own run dir:
an image stack of S seeds has S members (each seed's checkpoints, samples and FID are its own), a
synthetic stack one (its summary lists every seed), the first-order dynamics one. A trainable has

    step()                      one iteration (no host sync needed)
    step_count                  iterations done
    state_dicts() / load_state_dicts(states, step)    one checkpoint body per member
    metrics() -> [dict]         per member, a host sync; `finite: False` means it diverged
    weights_finite() -> [bool]  per member, checked before each checkpoint
    sample(dirs, step)          pictures at train.sample_every
    outcome() -> [dict]         per member, the summary of a run that ended
    finish(dirs)                end-of-run figures

A member that diverges is marked `diverged` with its last good checkpoint; the others go on.
"""
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from . import checkpoint
from .identity import defining, digest
from .progress import Progress, hms
from .rundir import DIVERGED, FINISHED, RUNNING, RunDir, write_json

log = logging.getLogger("gl-train")


@dataclass
class Member:
    run: RunDir
    cfg: object           # the member's own config (a stacked seed: seed = s, stack = all seeds)
    identity: str = ""
    defining: dict = None
    alive: bool = True


def stacked_seeds(cfg) -> list[int]:
    return [cfg.seed + k for k in range(cfg.train.num_seeds)]


def plan_members(cfg, job_dir: Path) -> list[Member]:
    """One member, or one per seed of an image stack (in `<job>/s<seed>/`)."""
    seeds = stacked_seeds(cfg)
    if cfg.dataset.kind != "image" or len(seeds) == 1:
        return [Member(RunDir(job_dir), cfg)]
    members = []
    for s in seeds:
        mc = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        mc.seed, mc.train.num_seeds, mc.stack = s, 1, {"seeds": seeds}
        members.append(Member(RunDir(Path(job_dir) / f"s{s}"), mc))
    return members


def bind_identities(members: list[Member], fingerprint: str | None) -> None:
    """Give each member its identity and refuse dirs that hold another run."""
    for m in members:
        m.defining = defining(m.cfg, fingerprint)
        m.identity = digest(m.defining)
        m.run.check_identity(m.identity, m.defining)


def all_final(members: list[Member]) -> bool:
    return all(m.run.is_final() for m in members)


def base_fields(m: Member) -> dict:
    c = m.cfg
    return {"identity": m.identity, "experiment": c.experiment_name, "dataset": c.dataset.name,
            "model": c.model.name, "width": c.width, "loss": c.loss.name, "seed": c.seed,
            "num_seeds": c.train.get("num_seeds", 1)}


def start(members: list[Member]) -> None:
    """Create the run dirs; write config.yaml and identity.json once, at creation."""
    for m in members:
        m.run.create()
        if not (m.run.path / "config.yaml").exists():
            OmegaConf.save(m.cfg, m.run.path / "config.yaml", resolve=True)
            write_json(m.run.path / "identity.json", m.defining)
        m.run.write_summary(**base_fields(m), status=RUNNING)


# ---------------------------------------------------------------- resume

def resume(trainable, members: list[Member]) -> int:
    """Load the newest step every live member has a loadable checkpoint for (older ones when the
    newest is corrupt, saying so); a member that already diverged comes back from its last good
    checkpoint, only to keep the stack whole. 0 and a step-0 checkpoint for a fresh run."""
    for m in members:
        checkpoint.clean(m.run.path)
        m.alive = not m.run.is_final()
    live = [m for m in members if m.alive]
    common = set.intersection(*(set(checkpoint.list_steps(m.run.path)) for m in live))
    for step in sorted(common, reverse=True):
        states = {id(m): checkpoint.loadable(m.run.path, [step])[1] for m in live}
        if any(s is None for s in states.values()):
            continue
        for m in members:
            if not m.alive:
                states[id(m)] = checkpoint.loadable(m.run.path)[1]
            else:
                m.run.truncate_metrics(step)
        trainable.load_state_dicts([states[id(m)] for m in members], step)
        log.info(f"resuming {_where(live)} from iteration {step}")
        return step
    save(trainable, members, 0)
    return 0


def save(trainable, members: list[Member], step: int, keep: int = 3) -> None:
    finite = trainable.weights_finite()
    for m, state, ok in zip(members, trainable.state_dicts(), finite):
        if not m.alive:
            continue
        if not ok:
            diverge(m, f"non-finite weights at iteration {step}; kept the last good checkpoint", step)
            continue
        config = OmegaConf.to_container(m.cfg, resolve=True)
        checkpoint.save(m.run.path, step, {**state, "config": config}, keep=keep)


def diverge(m: Member, why: str, step: int) -> None:
    m.alive = False
    log.error(f"diverged: {m.run.path}: {why}")
    m.run.write_summary(**base_fields(m), status=DIVERGED, error=why, iters=step)


# ---------------------------------------------------------------- the loop

def train(trainable, members: list[Member], cfg) -> list[dict]:
    t = cfg.train
    it = resume(trainable, members)
    progress = Progress(trainable.label, t.iters, it, t.log_seconds, logger=log)
    t0, it0 = time.time(), it
    try:
        while it < t.iters and any(m.alive for m in members):
            trainable.step()
            it += 1
            if it % t.log_every == 0 or it == t.iters:
                _log(trainable, members, it, progress)
            progress.tick(it)
            if it % t.sample_every == 0 or it == t.iters:
                trainable.sample([m.run.path for m in members], it)
            if it % t.ckpt_every == 0 and it < t.iters:
                save(trainable, members, it)
        save(trainable, members, it)
    finally:
        progress.close()
    seconds = time.time() - t0
    speed = {"seconds": round(seconds, 1), "it_per_s": round((it - it0) / max(seconds, 1e-9), 2)}
    outcomes = trainable.outcome()
    for m, out in zip(members, outcomes):
        if m.alive:
            m.run.write_summary(**base_fields(m), status=out.pop("status", FINISHED), iters=it, **speed,
                                **out)
    trainable.finish([m.run.path for m in members])
    summaries = [m.run.summary() for m in members]
    statuses = [s.get("status", "?") for s in summaries]
    counts = ", ".join(f"{statuses.count(x)} {x}" for x in dict.fromkeys(statuses))
    log.info(f"{trainable.label}: {counts} after {it} iterations in {hms(seconds)} "
             f"({(it - it0) / max(seconds, 1e-9):.1f} it/s) -> {_where(members)}")
    return summaries


def _log(trainable, members, it, progress) -> None:
    recs = trainable.metrics()
    for m, rec in zip(members, recs):
        if not m.alive:
            continue
        finite = rec.pop("finite", True)
        m.run.log_metrics({"step": it, **rec, "it_per_s": round(progress.rate(), 2)})
        if not finite:
            diverge(m, f"loss is {rec.get('d_loss')} (D) / {rec.get('g_loss')} (G) at iteration {it}", it)
    progress.note(_loss_text(recs))


def _loss_text(recs: list[dict]) -> str:
    """The losses for a progress line: one seed's, or the mean over a stack's seeds."""
    parts = []
    for key in ("d_loss", "g_loss"):
        vals = [r[key] for r in recs if isinstance(r.get(key), float)]
        if vals:
            parts.append(f"{key[0]} {sum(vals) / len(vals):.3f}")
    return " ".join(parts) + (f" (mean of {len(recs)} seeds)" if parts and len(recs) > 1 else "")


def _where(members) -> str:
    """The run dir as the user typed it (relative to the working dir when it is below it)."""
    paths = [m.run.path for m in members]
    where = paths[0] if len(paths) == 1 else paths[0].parent
    try:
        where = where.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return str(where) if len(paths) == 1 else f"{where} ({len(paths)} seeds)"
