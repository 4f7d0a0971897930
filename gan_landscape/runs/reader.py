"""The run dirs gl-report reads, in whatever state a run left them: finished, diverged, failed
before it had a config (no config.yaml, or one with width: abc), killed mid-write (a half line in a
.jsonl file). Nothing here raises on a run's content; a folder that holds no runs is a ReportError.

A run dir is a folder with summary.json; an image stack's job folder holds one per seed (s0/, s1/,
...), a synthetic stack is one run dir whose summary lists its seeds.
"""
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml

from gan_landscape.runs import lock
from gan_landscape.cli import UserError
from gan_landscape.files import read_jsonl
from gan_landscape.kinds.first_order import RESULT_FILE
from gan_landscape.runs.rundir import find_run_dirs

FIRST_ORDER = RESULT_FILE


class ReportError(UserError):
    pass


@dataclass
class Run:
    path: Path
    summary: dict
    config: dict
    source: Path  # the directory gl-report was given that holds this run
    problem: str = ""  # a file of the run that could not be read
    fid: float | None = None

    @property
    def status(self) -> str:
        """As summary.json says; `stale` for a `running` run whose lock no process holds (killed
        without a word: kill -9, a lost node). A stacked seed's lock is its job dir's."""
        status = str(self.summary.get("status") or ("unreadable" if self.problem else "unknown"))
        if status == "running":
            owner = self.path if (self.path / lock.NAME).exists() else self.path.parent
            if lock.is_held(owner) is False:
                return "stale"
        return status

    @property
    def error(self) -> str:
        msg = " ".join(str(self.summary.get("error") or self.problem).split())
        return msg if len(msg) <= 160 else msg[:157] + "..."

    def get(self, dotted: str, default=None):
        """A value of the run's resolved config.yaml (default where it has no such key)."""
        node = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def pick(self, dotted: str, summary_key: str, default=None):
        """Config first; summary.json names the same things for a run whose config.yaml is missing."""
        value = self.get(dotted)
        return self.summary.get(summary_key, default) if value is None else value

    @property
    def experiment(self) -> str:
        """The report's name (a file name): the config's experiment_name, else the folder given."""
        name = self.pick("experiment_name", "experiment")
        name = str(name) if name else (self.source if self.source != self.path else self.path.parent).name
        return re.sub(r"[^\w.-]", "_", name)

    @property
    def kind(self) -> str | None:
        """The run's kind as gl-train wrote it; for run dirs from before summary.json said it, the
        config's dataset.kind, else guessed from the results it holds."""
        kind = self.summary.get("kind") or self.get("dataset.kind")
        if kind:
            return str(kind)
        if (self.path / FIRST_ORDER).exists():
            return "population"
        if "seeds" in self.summary or "collapse_rate" in self.summary:
            return "synthetic"
        return "image" if "fid" in self.summary else None

    @property
    def cell(self) -> tuple | None:
        """(dataset, model, width, bottleneck, loss): what a table row is about; None where the config
        does not say (a job that failed before writing one, or a value like width=abc)."""
        ds, model = self.pick("dataset.name", "dataset"), self.pick("model.name", "model")
        loss, width = self.pick("loss.name", "loss"), positive(self.pick("width", "width", 1.0))
        bottleneck, category = self.get("model.bottleneck", False), self.get("dataset.category")
        if None in (ds, model, loss, width) or not isinstance(bottleneck, bool):
            return None
        return f"{ds}/{category}" if category else str(ds), str(model), width, bottleneck, str(loss)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def positive(x) -> float | None:
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
    return float(x) if ok else None


# ---------------------------------------------------------------- reading runs

def load_dict(path: Path, parse, problems: list):
    """The parsed file (a dict), None if absent; a file that does not parse is noted, not raised."""
    if not path.exists():
        return None
    try:
        value = parse(path.read_text())
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as e:
        problems.append(f"{path.name} unreadable ({type(e).__name__})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name} is not a mapping")
        return None
    return value


def read_run(path: Path, source: Path) -> Run:
    problems = []
    summary = load_dict(path / "summary.json", json.loads, problems) or {}
    config = load_dict(path / "config.yaml", yaml.safe_load, problems) or {}
    return Run(path, summary, config, source, "; ".join(problems))


def read_fid(run: Run, protocol: str, generator: str) -> None:
    """The FID of the run's final checkpoint: the last matching fid.jsonl record, else summary.json."""
    final = run.summary.get("iters")
    recs = [r for r in read_jsonl(run.path / "fid.jsonl") if isinstance(r.get("step"), int) and _number(r.get("fid"))
            and r.get("generator", "raw") == generator and r.get("protocol") == protocol]
    if recs:
        last = max(r["step"] for r in recs) if final is None else final
        recs = [r for r in recs if r["step"] == last]
    if recs:
        run.fid = float(recs[-1]["fid"])
        return
    s = run.summary.get("fid")
    s = s if isinstance(s, dict) else {}
    if s.get("protocol") == protocol and _number(s.get(generator)) and s.get("step") in (final, None):
        run.fid = float(s[generator])


def find_runs(dirs) -> list[Run]:
    """Every run dir (rundir.find_run_dirs) in or below `dirs`, each run once."""
    runs, seen = [], set()
    for d in map(Path, dirs):
        if not d.is_dir():
            raise ReportError(f"no such directory: {d}")
        found = find_run_dirs(d)
        if not found:
            raise ReportError(f"no runs (summary.json) in or below {d}")
        for path in sorted(found):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                runs.append(read_run(path, d))
    return runs


def groups(runs: list[Run]) -> list[tuple[str, str | None, list[Run]]]:
    """(report name, kind, runs): one report per experiment; an experiment mixing kinds (adhoc runs)
    gets one per kind, `<experiment>_<kind>`. A run of unknown kind goes with its experiment."""
    by_exp = defaultdict(list)
    for r in runs:
        by_exp[r.experiment].append(r)
    out = []
    for name, rs in sorted(by_exp.items()):
        kinds = sorted({r.kind for r in rs} - {None})
        if len(kinds) <= 1:
            out.append((name, kinds[0] if kinds else None, rs))
            continue
        for kind in kinds + [None]:
            part = [r for r in rs if r.kind == kind]
            if part:
                out.append((f"{name}_{kind or 'other'}", kind, part))
    return out


def seeds_asked(runs: list[Run], override: int | None) -> int | None:
    if override:
        return override
    asked = [r.get("plan.seeds") for r in runs if isinstance(r.get("plan.seeds"), int)]
    return max(asked) if asked else None
