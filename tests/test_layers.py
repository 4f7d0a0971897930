"""The package's stages, lowest first; a module imports only modules of its own stage or below
(the README's architecture section). A new module must be given a stage here."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gan_landscape"
STAGES = [
    ("foundations", {"__init__", "cli", "files", "rng", "progress", "losses", "config.rules",
                     "config.schema", "metrics", "metrics.features", "metrics.modes", "runs.identity",
                     "runs.interrupt", "runs.lock", "report", "report.plots", "analysis", "analysis.game"}),
    ("data, nets, metrics", {"config", "data", "data.samplers", "data.synthetic", "data.file_digest", "nets", "nets.cnn",
                             "nets.resnet", "nets.dcgan256", "nets.stacked", "nets.upsample", "nets.mlp",
                             "nets.mlp_step", "nets.pair_kernel", "metrics.inception", "metrics.fid",
                             "kinds.first_order", "kinds.cuda_graph"}),
    ("trainables", {"kinds.image_gan", "kinds.synthetic_run"}),
    ("kinds", {"kinds", "kinds.image", "kinds.synthetic", "kinds.population"}),
    ("runs", {"runs", "runs.rundir", "runs.checkpoint", "runs.job", "runs.reader", "report.scores"}),
    ("commands", {"commands", "commands.train", "commands.slurm", "commands.evaluate", "commands.report",
                  "commands.landscape", "report.widths", "report.tables"}),
]
STAGE = {m: i for i, (_, mods) in enumerate(STAGES) for m in mods}


def modules() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (relative or absolute)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"
        pkg = list(parts[:-1])
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg[:len(pkg) - (node.level - 1)]
                targets = [base + node.module.split(".")] if node.module else [base + [a.name] for a in node.names]
                deps |= {".".join(t) for t in targets}
            elif isinstance(node, ast.ImportFrom) and node.module == "gan_landscape":
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gan_landscape."):
                module = node.module.removeprefix("gan_landscape.")
                deps |= {f"{module}.{a.name}" for a in node.names}  # a module of a package, or a name in one
        out[name] = {d for d in deps if d}
    return out


def _stage(dep: str, known: dict) -> int:
    """The stage of an imported name: a module, or a name inside a package (nets.build_stacked)."""
    while dep not in STAGE and "." in dep:
        dep = dep.rsplit(".", 1)[0]
    return STAGE.get(dep, -1)


def test_every_module_has_a_stage():
    assert sorted(set(modules()) - set(STAGE)) == []


def test_no_module_imports_a_module_above_it():
    mods = modules()
    upward = [f"{m} ({STAGES[STAGE[m]][0]}) imports {d} ({STAGES[_stage(d, mods)][0]})"
              for m, deps in mods.items() if m in STAGE for d in deps if _stage(d, mods) > STAGE[m]]
    assert upward == []
