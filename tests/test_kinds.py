"""Run kinds are plugins: a new kind is one module and its YAML, outside the package, and gl-train
runs it end to end (run dir named by the kind, identity, checkpoints, metrics, artifacts, skip on
rerun); the built-in kinds are modules with the same attributes."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from gan_landscape import kinds
from gan_landscape.cli import ConfigError

KIND = '''
"""A toy kind: gradient descent-ascent on f(x, y) = x*y + a/2 x^2, seeds stacked in one tensor."""
import torch

NAME = "{dataset}-{model}-{seeds}"
RULES = {}


def check(cfg):
    if cfg.dataset.a < 0:
        from gan_landscape.cli import ConfigError
        raise ConfigError(f"dataset.a={cfg.dataset.a}: expected a number >= 0")


class GDA:
    def __init__(self, cfg):
        g = torch.Generator().manual_seed(cfg.seed)
        self.xy = torch.randn(cfg.train.num_seeds, 2, generator=g, dtype=torch.float64)
        self.a, self.lr, self.step_count, self.label = cfg.dataset.a, cfg.optim.g_lr, 0, "gda"

    def step(self):
        x, y = self.xy[:, 0].clone(), self.xy[:, 1].clone()
        self.xy[:, 0] -= self.lr * (y + self.a * x)
        self.xy[:, 1] += self.lr * x
        self.step_count += 1

    def state_dicts(self):
        return [{"xy": self.xy.clone()}]

    def load_state_dicts(self, states, step):
        self.xy, self.step_count = states[0]["xy"].clone(), step

    def metrics(self):
        return [{"d_loss": float(self.xy[:, 1].abs().mean()), "g_loss": float(self.xy[:, 0].abs().mean())}]

    def outcome(self):
        return [{"final_xy": self.xy.tolist()}]

    def artifacts(self, step, final):
        return [{"endpoint.json": {"step": step, "norm": float(self.xy.norm())}} if final else {}]


def build(cfg, device):
    return GDA(cfg)
'''
DATASET = "name: toy\nkind: toykinds.gda\na: 0.5\n"
RECIPE = "# @package _global_\noptim: {g_lr: 0.05, d_lr: 0.05}\ntrain: {iters: 40, batch_size: null, log_every: 10, ckpt_every: 20}\n"


@pytest.fixture
def plugin(tmp_path):
    """The kind's module in a package of its own and its YAML in a config dir of its own."""
    (tmp_path / "toykinds").mkdir()
    (tmp_path / "toykinds" / "__init__.py").write_text("")
    (tmp_path / "toykinds" / "gda.py").write_text(textwrap.dedent(KIND))
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "recipe").mkdir()
    (tmp_path / "conf" / "model").mkdir()
    (tmp_path / "conf" / "dataset" / "toy.yaml").write_text(DATASET)
    (tmp_path / "conf" / "model" / "gda.yaml").write_text("name: gda\n")
    (tmp_path / "conf" / "recipe" / "gda_toy.yaml").write_text(RECIPE)
    return tmp_path


def gl_train(plugin, *args):
    env = {**os.environ, "PYTHONPATH": str(plugin) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gan_landscape.commands.train", f"hydra.searchpath=[file://{plugin / 'conf'}]",
           "dataset=toy", "model=gda", *args]
    return subprocess.run(cmd, cwd=plugin, capture_output=True, text=True, timeout=300, env=env)


def test_a_new_kind_is_one_module_and_its_yaml_and_trains_end_to_end(plugin):
    out = gl_train(plugin, "train.num_seeds=3")
    assert out.returncode == 0, out.stderr
    run = plugin / "runs" / "adhoc" / "toy-gda-s0-2"          # named by the kind's NAME
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["kind"] == "toykinds.gda"
    assert summary["iters"] == 40 and len(summary["final_xy"]) == 3 and summary["identity"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == \
        ["step_0000000.pt", "step_0000020.pt", "step_0000040.pt"]
    assert [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [10, 20, 30, 40]
    assert json.loads((run / "endpoint.json").read_text())["step"] == 40
    again = gl_train(plugin, "train.num_seeds=3")
    assert again.returncode == 0 and "already finished" in again.stderr + again.stdout


def test_a_new_kinds_own_check_is_one_line(plugin):
    out = gl_train(plugin, "dataset.a=-1")
    assert out.returncode == 2 and out.stderr.strip() == "gl-train: dataset.a=-1: expected a number >= 0"
    assert not (plugin / "runs").exists()


def test_unknown_kinds_are_one_line():
    with pytest.raises(ConfigError, match=r"^dataset.kind=nowhere.kind: expected one of image, synthetic, population"):
        kinds.get("nowhere.kind")
    with pytest.raises(ConfigError, match="lacks RULES, NAME, check, build"):
        kinds.get("json.decoder")  # importable, but not a kind


@pytest.mark.parametrize("name", kinds.BUILTIN)
def test_builtin_kinds_are_modules_with_the_same_attributes(name):
    kind = kinds.get(name)
    assert all(hasattr(kind, a) for a in kinds.REQUIRED) and "{seeds}" in kind.NAME
    assert kinds.split_seeds(kind) == (name == "image") and kinds.scores_images(kind) == (name == "image")
