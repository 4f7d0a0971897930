"""One gl-train job, start to end: plan -> bind identities -> skip or start -> resume -> loop ->
finish, diverge or fail. The only code that writes run dirs while training.

A job trains one *trainable* (its kind's, kinds/) for one or more *members*, each with its own run
dir: an image stack of S seeds has S members (each seed's checkpoints, samples and FID are its own),
a synthetic stack one (its summary lists every seed), the population dynamics one. A member that
diverges is marked `diverged` with its last good checkpoint; the others go on.
"""
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from omegaconf import OmegaConf

from gan_landscape.runs import checkpoint, identity, interrupt
from gan_landscape import kinds
from gan_landscape.cli import ConfigError, one_line, resolve_device
from gan_landscape.runs.identity import defining, digest
from gan_landscape.progress import Progress, hms
from gan_landscape.runs.rundir import DIVERGED, FAILED, FINISHED, RUNNING, RunDir

log = logging.getLogger("gl-train")


class Trainable(Protocol):
    """What a kind's `build` returns. Lists are per member. Optional: `weights_finite() -> [bool]`
    (checked before each checkpoint), `artifacts(step, final) -> [{name: picture | figure | dict}]`
    (written into each member's dir by RunDir.write_artifact)."""
    label: str
    step_count: int

    def step(self) -> None: ...                       # one iteration, no host sync needed
    def state_dicts(self) -> list[dict]: ...          # one checkpoint body per member
    def load_state_dicts(self, states: list, step: int) -> None: ...
    def metrics(self) -> list[dict]: ...              # a host sync; `finite: False` = diverged
    def outcome(self) -> list[dict]: ...              # the summary fields of a run that ended


@dataclass
class Member:
    run: RunDir
    cfg: object           # the member's own config (a stacked image seed: seed = s, stack = all seeds)
    identity: str = ""
    defining: dict = field(default_factory=dict)
    alive: bool = True


def run_name(*, _root_) -> str:
    """OmegaConf resolver for hydra.run.dir / hydra.sweep.subdir: the run's readable name, in its
    kind's form (an unknown kind gets the GAN form; the job then stops on it in one line)."""
    try:
        template = kinds.of(_root_).NAME
    except ConfigError:
        template = kinds.get("image").NAME
    return identity.run_name(_root_, template)


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("gl_run_name", run_name, replace=True)


def stacked_seeds(cfg) -> list[int]:
    return [cfg.seed + k for k in range(cfg.train.num_seeds)]


def plan_members(cfg, job_dir: Path, split: bool) -> list[Member]:
    """One member, or one per seed of a stack whose kind splits seeds (in `<job>/s<seed>/`)."""
    seeds = stacked_seeds(cfg)
    if not split or len(seeds) == 1:
        return [Member(RunDir(job_dir), cfg)]
    members = []
    for s in seeds:  # each seed's config.yaml is what trains that seed alone, plus the stack it was in
        mc = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        mc.seed, mc.train.num_seeds, mc.stack = s, 1, {"seeds": seeds}
        members.append(Member(RunDir(Path(job_dir) / f"s{s}"), mc))
    return members


class Job:
    def __init__(self, cfg, job_dir, job_num: int | None = None):
        self.kind = kinds.validate(cfg)          # one line and nothing on disk for a bad config
        self.cfg, self.job_dir = cfg, Path(job_dir)
        self.device = resolve_device(cfg.train.device, job_num)
        self.members = plan_members(cfg, self.job_dir, kinds.split_seeds(self.kind))
        self.trainable: Trainable | None = None

    # ---------------------------------------------------------------- plan and identities
    def run(self) -> list[dict]:
        """Train (or resume) the job's runs; finished runs are left untouched."""
        fp = kinds.fingerprint(self.kind, self.cfg)  # None: the data is not on disk yet (a download)
        if self._finished(fp):
            return self.summaries()
        self._set_up_torch()
        self.trainable = self.kind.build(self.cfg, self.device)  # loads the data: errors before writes
        if fp is None:
            fp = kinds.fingerprint(self.kind, self.cfg)
        if self._finished(fp):
            return self.summaries()
        self._start()
        try:
            return self._train()
        except KeyboardInterrupt:  # a second Ctrl-C (interrupt.py): the newest checkpoint stays
            self._interrupted(interrupt.SIGINT)
            raise
        except Exception as e:
            self._fail(e)
            raise

    def _finished(self, fp) -> bool:
        """Bind identities (refusing a dir that holds another run) once they are known; True when
        every member is already final."""
        if fp is None and hasattr(self.kind, "fingerprint"):
            return False
        for m in self.members:
            m.defining = defining(m.cfg, fp)
            if arith := kinds.arithmetic(self.kind, m.cfg, self.device):
                m.defining["arithmetic"] = arith
            m.identity = digest(m.defining)
            m.run.check_identity(m.identity, m.defining)
        if all(m.run.is_final() for m in self.members):
            log.info(f"already finished: {self.job_dir} (delete it to train again)")
            return True
        return False

    def _set_up_torch(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        threads = self.cfg.train.cpu_threads or kinds.cpu_threads(self.kind)
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(self.cfg.seed)

    def _start(self) -> None:
        """Create the run dirs; config.yaml and identity.json once, at creation."""
        for m in self.members:
            m.run.start(m.cfg, m.defining)
            m.run.write_summary(**self._fields(m), status=RUNNING)

    def _fields(self, m: Member) -> dict:
        c = m.cfg
        return {"identity": m.identity, "kind": str(c.dataset.kind), "experiment": c.experiment_name,
                "dataset": c.dataset.name, "model": c.model.name, "width": c.width, "loss": c.loss.name,
                "seed": c.seed, "num_seeds": c.train.get("num_seeds", 1)}

    def summaries(self) -> list[dict]:
        return [m.run.summary() for m in self.members]

    def _fail(self, e: BaseException) -> None:
        for m in self.members:
            if m.alive:
                m.run.write_summary(**self._fields(m), status=FAILED, error=one_line(type(e).__name__, e))

    # ---------------------------------------------------------------- resume and save
    def _resume(self) -> int:
        """Load the newest step every live member has a loadable checkpoint for (older ones when the
        newest is corrupt, saying so); a member that already diverged comes back from its last good
        checkpoint, only to keep the stack whole. 0 and a step-0 checkpoint for a fresh run."""
        for m in self.members:
            checkpoint.clean(m.run.path)
            m.alive = not m.run.is_final()
        live = [m for m in self.members if m.alive]
        common = set.intersection(*(set(checkpoint.list_steps(m.run.path)) for m in live))
        for step in sorted(common, reverse=True):
            states = {id(m): checkpoint.loadable(m.run.path, [step])[1] for m in live}
            if any(s is None for s in states.values()):
                continue
            for m in self.members:
                if not m.alive:
                    states[id(m)] = checkpoint.loadable(m.run.path)[1]
                else:
                    m.run.truncate_metrics(step)
            self.trainable.load_state_dicts([states[id(m)] for m in self.members], step)
            log.info(f"resuming {self.where()} from iteration {step}")
            return step
        self._save(0)
        return 0

    def _save(self, step: int) -> None:
        keep = self.cfg.train.get("keep_checkpoints", 4)  # the newest besides step 0; or "all"
        tr = self.trainable
        finite = tr.weights_finite() if hasattr(tr, "weights_finite") else [True] * len(self.members)
        for m, state, ok in zip(self.members, tr.state_dicts(), finite):
            if not m.alive:
                continue
            if not ok:
                self._diverge(m, f"non-finite weights at iteration {step}; kept the last good checkpoint", step)
                continue
            config = OmegaConf.to_container(m.cfg, resolve=True)
            checkpoint.save(m.run.path, step, {**state, "config": config},
                            keep=None if keep == "all" else keep)

    def _interrupted(self, signum: int) -> interrupt.Interrupted:
        """Status `interrupted`, with the signal and the iteration a rerun resumes from (the newest
        checkpoint); returns what gl-train raises to end with one line."""
        step = 0
        for m in self.members:
            step = max(checkpoint.list_steps(m.run.path) or [0])
            if m.alive:
                m.run.write_summary(**self._fields(m), status=interrupt.INTERRUPTED,
                                    signal=interrupt.name(signum), iters=step)
        return interrupt.Interrupted(signum, step, self.cfg.train.iters)

    def _diverge(self, m: Member, why: str, step: int) -> None:
        m.alive = False
        log.error(f"diverged: {m.run.path}: {why}")
        m.run.write_summary(**self._fields(m), status=DIVERGED, error=why, iters=step)

    # ---------------------------------------------------------------- the loop
    def _train(self) -> list[dict]:
        t, tr = self.cfg.train, self.trainable
        it = self._resume()
        progress = Progress(tr.label, t.iters, it, t.log_seconds, logger=log)
        t0, it0 = time.time(), it
        try:
            # interrupt.py: a signal only sets a flag; the iteration under way ends, then a checkpoint
            while it < t.iters and any(m.alive for m in self.members) and interrupt.pending() is None:
                tr.step()
                it += 1
                if it % t.log_every == 0 or it == t.iters:
                    self._log(it, progress)
                progress.tick(it)
                if it % t.sample_every == 0 or it == t.iters:
                    self._write_artifacts(it, final=False)
                if it % t.ckpt_every == 0 and it < t.iters:
                    self._save(it)
            self._save(it)
            if interrupt.pending() is not None and it < t.iters:  # the rerun resumes from this save
                raise self._interrupted(interrupt.pending())
        finally:
            progress.close()
        seconds = time.time() - t0
        rate = (it - it0) / max(seconds, 1e-9)
        for m, out in zip(self.members, tr.outcome()):
            if m.alive:
                m.run.write_summary(**self._fields(m), status=out.pop("status", FINISHED), iters=it,
                                    seconds=round(seconds, 1), it_per_s=round(rate, 2), **out)
        self._write_artifacts(it, final=True)
        summaries = self.summaries()
        statuses = [s.get("status", "?") for s in summaries]
        counts = ", ".join(f"{statuses.count(x)} {x}" for x in dict.fromkeys(statuses))
        log.info(f"{tr.label}: {counts} after {it} iterations in {hms(seconds)} ({rate:.1f} it/s) "
                 f"-> {self.where()}")
        return summaries

    def _log(self, it: int, progress: Progress) -> None:
        recs = self.trainable.metrics()
        for m, rec in zip(self.members, recs):
            if not m.alive:
                continue
            finite = rec.pop("finite", True)
            m.run.log_metrics({"step": it, **rec, "it_per_s": round(progress.rate(), 2)})
            if not finite:
                self._diverge(m, f"loss is {rec.get('d_loss')} (D) / {rec.get('g_loss')} (G) at iteration {it}", it)
        progress.note(_loss_text(recs))

    def _write_artifacts(self, step: int, final: bool) -> None:
        if not hasattr(self.trainable, "artifacts"):
            return
        for m, arts in zip(self.members, self.trainable.artifacts(step, final)):
            for name, obj in arts.items():
                m.run.write_artifact(name, obj)

    def where(self) -> str:
        """The run dir as the user typed it (relative to the working dir when it is below it)."""
        paths = [m.run.path for m in self.members]
        where = paths[0] if len(paths) == 1 else paths[0].parent
        try:
            where = where.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            pass
        return str(where) if len(paths) == 1 else f"{where} ({len(paths)} seeds)"


def _loss_text(recs: list[dict]) -> str:
    """The losses for a progress line: one seed's, or the mean over a stack's seeds."""
    parts = []
    for key in ("d_loss", "g_loss"):
        vals = [r[key] for r in recs if isinstance(r.get(key), float)]
        if vals:
            parts.append(f"{key[0]} {sum(vals) / len(vals):.3f}")
    return " ".join(parts) + (f" (mean of {len(recs)} seeds)" if parts and len(recs) > 1 else "")
