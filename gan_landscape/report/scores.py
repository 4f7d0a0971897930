"""gl-report's image scores: each run's final-checkpoint records (fid.jsonl, else summary.json),
grouped strictly by `protocol_key`: two numbers are averaged only when every setting that makes
them comparable is equal. A record without a key (an older gl-eval) is grouped by its protocol
name under `legacy:<name>` and said to be so.

A group is flagged "not a paper FID" where any record came from random Inception weights or from
fewer fakes or reals than its protocol's config (configs/fid/<name>.yaml) asks.
"""
import math
from collections import defaultdict
from pathlib import Path

import yaml

from gan_landscape.cli import CONFIG_DIR
from gan_landscape.files import read_jsonl

NUMBERS = ("fid", "is_mean", "precision", "recall", "density", "coverage", "kid_mean", "prd_f8", "prd_f1_8")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def key_of(rec: dict) -> str:
    return str(rec.get("protocol_key") or f"legacy:{rec.get('protocol')}")


def final_records(run, protocol: str, generator: str) -> dict[str, dict]:
    """{protocol key: the run's last record of its final step} for one generator and protocol name;
    summary.json's fid where fid.jsonl has none."""
    final = run.summary.get("iters")
    recs = [r for r in read_jsonl(run.path / "fid.jsonl") if isinstance(r.get("step"), int) and _number(r.get("fid"))
            and r.get("generator", "raw") == generator and r.get("protocol") == protocol]
    if recs:
        last = max(r["step"] for r in recs) if final is None else final
        return {key_of(r): r for r in recs if r["step"] == last}
    s = run.summary.get("fid") if isinstance(run.summary.get("fid"), dict) else {}
    if s.get("protocol") == protocol and _number(s.get(generator)) and s.get("step") in (final, None):
        rec = {"fid": float(s[generator]), "protocol": protocol, "protocol_key": s.get("protocol_key")}
        return {key_of(rec): rec}
    return {}


def by_key(runs, protocol: str, generator: str) -> dict[str, dict]:
    """{protocol key: {run path: record}}, keys in order of first appearance."""
    groups = defaultdict(dict)
    for r in runs:
        for key, rec in final_records(r, protocol, generator).items():
            groups[key][r.path] = rec
    return dict(groups)


def asked(protocol: str) -> dict:
    """What the named protocol's config asks for (n_fake, n_real), or {} for an unknown name."""
    path = Path(CONFIG_DIR) / "fid" / f"{protocol}.yaml"
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def flags(recs: list[dict]) -> list[str]:
    """Why a group's numbers are not the protocol's full measurement."""
    out, want = [], asked(str(recs[0].get("protocol"))) if recs else {}
    rand = sum(bool(r.get("random_weights")) for r in recs)
    if rand:
        out.append(f"random Inception weights in {rand} run(s)")
    for field, used in (("n_fake", "n_fake"), ("n_real", "n_real_used")):
        have = [r[used] for r in recs if _number(r.get(used))]
        if _number(want.get(field)) and have and min(have) < want[field]:
            out.append(f"{min(have)} {field[2:]}s where the protocol asks {want[field]}")
    if any("protocol_key" not in r or r["protocol_key"] is None for r in recs):
        out.append("records without a protocol_key (older gl-eval): their settings may differ")
    return out


def describe(rec: dict) -> str:
    """A protocol in words, from one of its records."""
    if not rec.get("protocol_key") or "split" not in rec:
        return f"{rec.get('protocol')}: its settings are not recorded (an older gl-eval)"
    reals = f"{rec.get('n_real_used', rec.get('n_real'))} {rec.get('split')} reals"
    if rec.get("reals") == "random":
        reals += f" (random, seed {rec.get('reals_seed')})"
    parts = [f"{rec['n_fake']} fakes vs {reals}", f"G in {rec.get('g_mode')} mode",
             f"{rec.get('quantize')} to uint8", f"{rec.get('resize')} resize",
             f"Inception {rec.get('weights_sha256')}"]
    if rec.get("inception_score"):
        parts.append(f"IS from {rec.get('is_n_fake')} fakes, {rec.get('is_splits')} splits, "
                     f"{rec.get('is_logits')} logits")
    m = rec.get("metrics") or {}
    if m:
        parts.append("metrics " + ", ".join(f"{k} ({', '.join(f'{a}={b}' for a, b in v.items())})"
                                            for k, v in m.items()))
    return f"{rec.get('protocol')}: " + "; ".join(parts)


def width_figure(rows: list[dict], path) -> None:
    """FID (top) and recall (bottom) against width, one column per dataset x model, one line per
    loss (JS vs RS and the others), error bars = std over seeds."""
    from gan_landscape.report import plots  # matplotlib's Agg backend is chosen there
    plt = plots.plt
    panels = sorted({(r["dataset"], r["model"]) for r in rows})
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.4), squeeze=False)
    for j, (ds, model) in enumerate(panels):
        for row, (what, label) in enumerate((("fid", "FID (lower is better)"), ("recall", "recall (higher is better)"))):
            ax = axes[row, j]
            for i, loss in enumerate(losses):
                pts = sorted((r["width"], r[f"{what}_mean"], r[f"{what}_std"] or 0) for r in rows
                             if (r["dataset"], r["model"], r["loss"]) == (ds, model, loss)
                             and not r["bottleneck"] and r[f"{what}_mean"] is not None)
                if pts:
                    x, y, e = zip(*pts)
                    ax.errorbar(x, y, yerr=e, capsize=3, color=f"C{i}", marker="o", label=loss)
            ax.set_xscale("log", base=2)
            ticks = sorted({r["width"] for r in rows if r["model"] == model})
            ax.set_xticks(ticks, [f"{w:g}" for w in ticks], minor=False)
            ax.minorticks_off()
            ax.set_xlabel("width (1 = the paper's regular net)")
            ax.set_ylabel(label)
            ax.set_title(f"{ds}, {model}", fontsize=10)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    plots._save(fig, path, dpi=100)
