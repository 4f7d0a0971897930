"""What a CUDA graph needs of the image-GAN iteration, checked on the CPU, so that `make gpu-check`
finds no bug that a CPU could have found.

A graph replays recorded kernels: the iteration must not read a device value on the host (a sync:
`.item()`, `bool(t)`, `.tolist()`, ops with data-dependent shapes), must create no tensor outside
the device, must update its state in place (the graph writes to fixed addresses), and must draw
random numbers only from the per-seed generators the graph registered (any other generator fails
the capture or, the global one, couples the seeds). On the CPU the iteration runs the same code;
Adam is made as on CUDA (tensor lr, capturable), whose device check is widened to the CPU here.
Also: the streamed sampler's split (the loader is used only outside the iteration), checkpoints
whose random states come from another kind of device, scripts/precision_check.py's core, and
scripts/gpu_check.py's parts that run without a GPU.
"""
import functools
import importlib
import importlib.util
import json
import re
import sys
import time
import traceback
from contextlib import ExitStack, contextmanager

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from conftest import ROOT, make_cfg
from fakes import write_cifar10
import gan_landscape.kinds.image_gan as image_gan
from gan_landscape.kinds import validate
from gan_landscape.kinds.image_gan import ImageGAN

# Ops that read a device value on the host (or whose output shape depends on one).
SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "equal", "is_nonzero", "unique",
            "_unique", "_unique2", "unique_consecutive", "unique_dim", "repeat_interleave",
            "_assert_async", "allclose"}
IMPLICIT_RNG_OPS = {"native_dropout", "_fused_dropout", "dropout", "feature_dropout"}


@functools.cache
def _random(packet) -> bool:
    """An op that draws random numbers: one of its overloads takes a generator (randn has one
    overload with and one without; the one without draws from the global RNG)."""
    return any(a.name == "generator" for o in packet.overloads()
               for a in getattr(packet, o)._schema.arguments)


class GraphGuard(TorchDispatchMode):
    """Records host syncs, draws without an explicit generator, tensors made without a device,
    and the generators drawn from."""

    def __init__(self):
        super().__init__()
        self.problems, self.generators = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            self._flag(f"host sync: aten.{name}")
        elif name in IMPLICIT_RNG_OPS or (_random(func.overloadpacket) and kwargs.get("generator") is None):
            self._flag(f"draw from the global RNG: aten.{name}")
        elif _random(func.overloadpacket):
            self.generators.append(kwargs["generator"])
        out = func(*args, **kwargs)
        if any(isinstance(t, torch.Tensor) and t.is_meta for t in tree_leaves((args, kwargs, out))):
            self._flag(f"a tensor made without a device (on CUDA: a host tensor): aten.{name}")
        return out

    def _flag(self, what: str) -> None:
        where = "".join(traceback.format_stack(limit=6)[:-2])
        self.problems.append(f"{what}\n{where}")


@contextmanager
def graph_rules():
    """Inside: GraphGuard, reads to the host raise, and a factory call without a device makes a
    meta tensor, which the guard flags wherever it goes."""
    def refuse(name):
        def method(self, *a, **k):
            raise AssertionError(f"Tensor.{name}() inside the iteration (a device-to-host copy)")
        return method
    guard = GraphGuard()
    with pytest.MonkeyPatch.context() as mp, ExitStack() as stack:
        for name in ("tolist", "numpy", "cpu"):
            mp.setattr(torch.Tensor, name, refuse(name))
        stack.enter_context(guard)
        stack.enter_context(torch.device("meta"))
        yield guard


@pytest.fixture
def cuda_adam(monkeypatch):
    """Adam as make_adam builds it on CUDA (capturable, the lr a tensor the schedule rewrites)."""
    adam = importlib.import_module("torch.optim.adam")  # the module: torch.optim.adam is deleted
    widen = adam._get_capturable_supported_devices
    monkeypatch.setattr(adam, "_get_capturable_supported_devices",
                        lambda supports_xla=True: ["cpu", *widen(supports_xla)])
    monkeypatch.setattr(image_gan, "make_adam", lambda params, lr, opt, device, captured: torch.optim.Adam(
        params, lr=torch.tensor(float(lr)), betas=tuple(opt.betas), foreach=True, capturable=True))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These nets are tiny: a second intra-op thread only adds handoffs (and on a busy machine,
    spinning: 50x slower measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    write_cifar10(root, n_per_batch=16)
    return root


def small_cfg(root, model="cnn", loss="rsgan", *extra):
    """S=2-ready, EMA on, the lr decaying from iteration 0, two D steps: every path of the iteration."""
    return make_cfg("dataset=cifar10", f"model={model}", "width=0.0625", f"loss={loss}",
                    f"dataset.root={root}", "dataset.check_integrity=false", "train.device=cpu",
                    "train.ema=0.999", "train.iters=100", "train.lr_decay_start=0", "train.n_dis=2",
                    "train.batch_size=4", *extra)


def state_tensors(gan) -> dict[str, torch.Tensor]:
    """Everything the iteration must update in place (a graph writes to fixed addresses)."""
    out = {"step_t": gan.step_t, "acc": gan.acc}
    for tag, net in (("G", gan.G), ("D", gan.D), ("G_ema", gan.G_ema)):
        out.update({f"{tag}.{k}": t for k, t in net.state_dict(keep_vars=True).items()})
    for tag, opt in (("g_opt", gan.g_opt), ("d_opt", gan.d_opt)):
        out[f"{tag}.lr"] = opt.param_groups[0]["lr"]
        for i, st in enumerate(opt.state.values()):
            out.update({f"{tag}.{i}.{k}": t for k, t in st.items()})
    return out


# ---------------------------------------------------------------- the guard itself can fail

def test_graph_rules_catch_syncs_host_reads_global_draws_and_host_tensors():
    x, g = torch.ones(3), torch.Generator().manual_seed(0)
    for bad in (lambda: x.sum().item(), lambda: bool(x[0] > 0), lambda: x.nonzero(),
                lambda: torch.randn(3), lambda: torch.rand(3, generator=None)):
        with graph_rules() as guard:
            bad()
        assert guard.problems, "the guard missed a sync or a global draw"
    with pytest.raises(AssertionError, match="tolist"), graph_rules():
        x.tolist()
    with graph_rules() as guard:
        x.add_(torch.ones(3))  # made without a device: on the meta device here
    assert "without a device" in guard.problems[0]
    with graph_rules() as guard:
        torch.randn(3, generator=g, device="cpu").add_(x)
    assert not guard.problems and [h.initial_seed() for h in guard.generators] == [0]


# ---------------------------------------------------------------- the stacked iteration

@pytest.mark.parametrize("model, loss, extra", [
    ("cnn", "rsgan", ()),
    ("resnet", "jsgan", ("train.precision=bf16", "train.channels_last=true")),
], ids=["cnn-rsgan", "resnet-jsgan-bf16-channels_last"])
def test_stacked_iteration_is_graph_ready(cifar_root, cuda_adam, model, loss, extra):
    gan = ImageGAN(small_cfg(cifar_root, model, loss, *extra), torch.device("cpu"), [0, 1])
    assert torch.is_tensor(gan.g_opt.param_groups[0]["lr"]) and gan.g_opt.param_groups[0]["capturable"]
    gan.step()  # as the warm-ups: Adam creates its state
    before = {k: (t.data_ptr(), t.clone()) for k, t in state_tensors(gan).items()}
    gens = {id(g): g.get_state() for g in gan.graph.generators}
    global_rng = torch.get_rng_state()
    with graph_rules() as guard:
        gan._iteration()
    assert not guard.problems, "\n".join(guard.problems)
    assert torch.equal(torch.get_rng_state(), global_rng)
    # every draw from a generator the graph registers, and every registered generator drawn from
    # (known by seed: a dispatched op gets another Python object for the same generator)
    registered = [g.initial_seed() for g in gan.graph.generators]
    assert len(set(registered)) == len(registered) == 2 * 2
    assert {g.initial_seed() for g in guard.generators} == set(registered)
    assert all(not torch.equal(g.get_state(), gens[id(g)]) for g in gan.graph.generators)
    after = state_tensors(gan)
    assert set(after) == set(before)
    moved = [k for k, t in after.items() if t.data_ptr() != before[k][0]]
    assert not moved, f"rebound instead of updated in place: {moved}"
    changed = {k for k, t in after.items() if not torch.equal(t, before[k][1])}
    d_sn = [k for k in after if k.startswith("D.") and k.endswith(("weight_orig", "weight_u"))]
    must = ["step_t", "acc", "g_opt.lr", "d_opt.lr", "G.net.l1.weight", "G_ema.net.l1.weight",
            "g_opt.0.exp_avg", "d_opt.0.step", *d_sn[:2]]
    assert set(must) <= set(after) and len(d_sn) >= 2
    assert not set(must) - changed, f"not updated: {set(must) - changed}"
    t = gan.cfg.train
    lr = gan.cfg.optim.g_lr * (t.iters - 1) / (t.iters - t.lr_decay_start)  # read before the 2nd step
    assert gan.g_opt.param_groups[0]["lr"].item() == pytest.approx(lr, rel=1e-6)
    assert gan.acc[:, 2].tolist() == [2.0, 2.0]


# ---------------------------------------------------------------- streamed data

class _Refused:
    def __next__(self):
        raise LookupError("the loader was called")


def test_streamed_sample_only_reads_the_buffer_and_refill_feeds_it(cifar_root, cuda_adam):
    cfg = small_cfg(cifar_root, "cnn", "rsgan", "dataset.resident=false")
    gan = ImageGAN(cfg, torch.device("cpu"), [0, 1])
    sampler = gan.sampler
    assert sampler.slots == cfg.train.n_dis + 1  # RS-GAN's G step reads a real batch too
    gan.step()
    loaders = sampler.loaders
    sampler.loaders = [_Refused() for _ in loaders]
    with graph_rules() as guard:
        gan._iteration()  # reads the buffer filled by the last refill, never the loader
    assert not guard.problems, "\n".join(guard.problems)
    with pytest.raises(LookupError):
        gan.step()  # filling happens here, outside the iteration
    sampler.loaders = loaders
    sampler.refill()
    for slot in range(sampler.slots):
        x = sampler.sample(cfg.train.batch_size)
        clean = (sampler.buffer[slot].float() / 255 - 0.5) / 0.5
        assert 0 <= (x - clean).min() and (x - clean).max() < 1 / 128 + 1e-6
    assert not torch.equal(sampler.buffer[0], sampler.buffer[1])


def test_streamed_batches_are_staged_in_draw_order(cifar_root):
    """Each loader batch is copied straight into its slot (pinned once, by the loader): the slots
    hold, slot-major, what the seeds' loaders give."""
    from gan_landscape.data import image_pool
    from gan_landscape.data.samplers import StreamSampler, _forever
    cfg = small_cfg(cifar_root, "cnn", "rsgan", "dataset.resident=false")
    sampler = StreamSampler(cfg.dataset, 4, [0, 1], 3, "cpu", salt=2)
    ref = [_forever(torch.utils.data.DataLoader(
        image_pool(cfg.dataset, "train"), batch_size=4, shuffle=True,
        drop_last=True, generator=torch.Generator().manual_seed(s * 1000 + 2))) for s in (0, 1)]
    for _ in range(2):
        sampler.refill()
        want = torch.stack([torch.stack([next(it) for it in ref]) for _ in range(3)])
        assert torch.equal(sampler.buffer, want)


def test_sampler_slot_is_host_state_the_graph_can_restore(cifar_root):
    cfg = small_cfg(cifar_root, "cnn", "rsgan", "dataset.resident=false")
    gan = ImageGAN(cfg, torch.device("cpu"), [0, 1])
    assert gan.graph.get_host_state == gan.sampler.host_state
    gan.sampler.refill()
    saved = gan.graph.get_host_state()
    gan._iteration()  # an iteration "recorded and thrown away"
    assert gan.sampler.slot == saved + gan.sampler.slots
    gan.graph.set_host_state(saved)
    assert gan.sampler.slot == saved == 0
    resident = ImageGAN(small_cfg(cifar_root), torch.device("cpu"), [0])
    assert resident.graph.get_host_state() is None


# ---------------------------------------------------------------- checkpoints across devices

def test_checkpoint_with_another_devices_random_states_loads(cifar_root):
    cfg = small_cfg(cifar_root)
    gan = ImageGAN(cfg, torch.device("cpu"), [0, 1])
    gan.step()
    states = gan.state_dicts()
    philox = torch.zeros(16, dtype=torch.uint8)  # what a CUDA generator's get_state() gives
    for s in states:
        s["rng"] = {"z": philox, "data": philox}
    other = ImageGAN(cfg, torch.device("cpu"), [0, 1])
    fresh = [g.get_state() for g in other.graph.generators]
    other.load_state_dicts(states, 1)  # nets and Adam state load; the generators keep their seeds
    assert all(torch.equal(g.get_state(), s) for g, s in zip(other.graph.generators, fresh))
    torch.testing.assert_close(other.generate(gan.fixed_z(4)), gan.generate(gan.fixed_z(4)))
    other.step()
    assert other.step_count == 2 and torch.isfinite(other.acc).all()


# ---------------------------------------------------------------- scripts/precision_check.py

def _script(name):
    if str(ROOT / "scripts") not in sys.path:  # as when run: a script imports its sibling modules
        sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_precision_check_runs_the_stack_in_each_precision(cifar_root):
    pc = _script("precision_check")
    out = pc.measure(str(cifar_root), [("cnn", 0.0625)], ["fp32", "bf16"], iters=6, seeds=2,
                     window=2, batch=4, device="cpu")
    r = out["cnn w0.0625"]
    assert set(r["curves"]) == {"fp32", "bf16"} and r["cuda_graph"] == {"fp32": "off", "bf16": "off"}
    assert r["curves"]["fp32"].shape == (2, 3, 2) and np.isfinite(r["curves"]["fp32"]).all()
    assert not np.array_equal(r["curves"]["fp32"], r["curves"]["bf16"])  # bf16 did run in bf16
    assert r["stats"]["fp32"]["gap"] == [0.0, 0.0] and r["stats"]["fp32"]["tracks"]
    lines = pc.report(out, 2)
    assert lines[-1].startswith("cnn w0.0625: bf16 tracks fp32: ")
    assert "| cuda_graph |" in lines[0] and "| off |" in lines[2]


def test_precision_statistic_tells_a_shift_from_seed_noise():
    pc = _script("precision_check")
    rng = np.random.default_rng(0)
    fp32 = 1.0 + 0.1 * rng.standard_normal((4, 30, 2))
    same = 1.0 + 0.1 * rng.standard_normal((4, 30, 2))  # other seeds, same distribution
    shifted = fp32.copy()
    shifted[..., 1] += 0.3  # G loss off by three seed std
    stats = pc.track_stats({"fp32": fp32, "same": same, "shifted": shifted,
                            "nan": np.where(np.arange(30)[None, :, None] == 29, np.nan, fp32)})
    noise = 0.1 * np.sqrt(2 / 4)
    assert stats["same"]["noise"] == pytest.approx([noise, noise], rel=0.2)
    assert stats["same"]["tracks"] and stats["same"]["ratio"][0] < 1
    assert not stats["shifted"]["tracks"] and stats["shifted"]["ratio"][1] > 3
    assert stats["shifted"]["ratio"][0] == 0
    assert not stats["nan"]["tracks"] and not stats["nan"]["finite"]


def test_precision_check_without_a_gpu_says_so_and_exits_0(capsys, monkeypatch):
    pc = _script("precision_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pc.main(["--iters", "10"]) == 0
    assert "no CUDA device" in capsys.readouterr().out


# ---------------------------------------------------------------- scripts/gpu_check.py

def test_gpu_check_train_command_composes_and_validates(tmp_path):
    check = _script("gpu_check")
    args = check.train_args(tmp_path / "cifar", tmp_path / "run")
    cfg = make_cfg(*[a for a in args if not a.startswith("hydra.")], "train.device=cpu")
    validate(cfg)
    assert cfg.train.num_seeds == 4 and cfg.train.iters == 2000 and not cfg.dataset.download


def test_gpu_check_steps_keep_to_their_time(tmp_path):
    check = _script("gpu_check")
    results = []
    slow = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"]
    t0 = time.time()
    assert not check.step("slow", slow, results, timeout=2, deadline=time.time() + 60)
    assert time.time() - t0 < 20
    assert results[-1][1] == "FAILED" and "timed out" in results[-1][3]
    assert not check.step("late", slow, results, timeout=60, deadline=time.time() + 1)
    assert results[-1][1] == "SKIPPED"
    assert check.step("fine", [sys.executable, "-c", "print('done')"], results, timeout=20,
                      deadline=time.time() + 60)
    assert results[-1][1:2] == ("ok",) and results[-1][3] == "done"
    # a step that exits 0 is judged by its check (gl-train: the summaries, not the exit status)
    assert not check.step("judged", [sys.executable, "-c", "print('done')"], results, timeout=20,
                          deadline=time.time() + 60, check=lambda text: (False, "a seed diverged"))
    assert results[-1][1] == "FAILED" and results[-1][3] == "a seed diverged"


def test_gpu_check_budget_is_the_sum_of_its_steps_limits_and_skips_do_not_fail():
    check = _script("gpu_check")
    assert check.BUDGET_S == sum(check.LIMITS.values()) <= 300
    assert min(check.LIMITS.values()) > check.MIN_START_S
    ok, skipped, failed = ("a", "ok", 1.0, ""), ("b", "SKIPPED", 0.0, ""), ("c", "FAILED", 3.0, "")
    note = ("data", "note", 0.0, "random pixels")
    assert check.verdict([note, ok, ok]) == (0, "gpu-check: 2/2 steps ok")
    code, line = check.verdict([note, ok, skipped])
    assert code == 0 and "1/2 steps ok" in line and "1 skipped for lack of time" in line
    code, line = check.verdict([ok, skipped, failed])
    assert code == 1 and "1 FAILED" in line


def _summaries(run, *fields):
    for k, f in enumerate(fields):
        (run / f"s{k}").mkdir(parents=True)
        (run / f"s{k}" / "summary.json").write_text(json.dumps(f))


@pytest.mark.parametrize("fields, ok, says", [
    ([{"status": "finished", "cuda_graph": "captured"}] * 4, True, "4 seeds finished"),
    ([{"status": "finished", "cuda_graph": "captured"}] * 3
     + [{"status": "diverged", "error": "loss is nan"}], False, "s3 diverged: loss is nan"),
    ([{"status": "finished", "cuda_graph": "captured"}] * 3
     + [{"status": "finished", "cuda_graph": "eager (operation not permitted)"}], False,
     "s3 cuda_graph eager (operation not permitted)"),
    ([{"status": "finished", "cuda_graph": "captured"}] * 3, False, "3 of 4 seeds"),
], ids=["all-captured", "a-seed-diverged", "fell-back", "a-seed-missing"])
def test_gpu_check_judges_training_by_the_summaries(tmp_path, fields, ok, says):
    check = _script("gpu_check")
    _summaries(tmp_path, *fields)
    verdict = check.train_verdict(tmp_path, 4)
    assert verdict[0] == ok and says in verdict[1]


def test_cifar10_folder_named_carried_shared_or_stand_in(tmp_path):
    data = _script("stand_in_data")
    carried, shared = tmp_path / "carried", tmp_path / "shared"
    stand_in, note = data.cifar10_folder(tmp_path / "tmp", None, places=(carried, shared))
    assert "random pixels" in note and (stand_in / "data_batch_5").exists()
    shared.mkdir()
    assert data.cifar10_folder(tmp_path, None, places=(carried, shared)) == (shared, f"data: {shared}")
    carried.mkdir()
    assert data.cifar10_folder(tmp_path, None, places=(carried, shared))[0] == carried
    assert data.cifar10_folder(tmp_path, str(stand_in), places=())[0] == stand_in
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 folder"):
        data.cifar10_folder(tmp_path, str(tmp_path / "absent"))
    assert data.CIFAR10_PLACES[0] == ROOT / "data" / "cifar10-subset"


def test_precision_check_names_its_data_and_refuses_a_missing_folder(tmp_path, capsys):
    pc = _script("precision_check")
    with pytest.raises(SystemExit) as e:
        pc.main([str(tmp_path / "absent"), "--device", "cpu"])
    assert e.value.code == 2 and "no CIFAR-10 folder" in capsys.readouterr().err


def test_bench_marks_every_graph_figure_that_ran_eagerly():
    bench = _script("bench_gpu")
    assert bench.cell_text(312.44, "captured") == "312.4 [graph]"
    assert bench.cell_text(33.4, "off") == "33.4"
    assert bench.cell_text(90.0, "eager (operation not permitted)") == \
        "90.0 [EAGER: eager (operation not permitted)]"
    assert bench.cell_text(None, "out of memory") == "out of memory"
    assert bench.cell_text(100.0, "captured", scale=3, digits=0) == "300 [graph]"
    assert bench.fell_back("eager (x)") and bench.fell_back("failed (y)")
    assert not bench.fell_back("captured") and not bench.fell_back("out of memory")


def test_scripts_never_import_tests():
    imports = re.compile(r"^\s*(from|import)\s+(fakes|conftest|tests)\b|[\"']tests[\"']", re.MULTILINE)
    for path in (ROOT / "scripts").glob("*.py"):
        assert not imports.search(path.read_text()), f"{path.name} imports from tests/"


# ---------------------------------------------------------------- on a GPU (make gpu-check)

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.mark.cuda
@needs_gpu
def test_a_failed_capture_trains_on_eagerly_with_working_generators():
    from gan_landscape.kinds.cuda_graph import WARMUP, Stepper
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.zeros(4, device="cuda")

    def iteration():
        x.add_(torch.rand(4, device="cuda", generator=g))
        if torch.cuda.is_current_stream_capturing():
            x.sum().item()  # a host sync: the capture fails

    caller = torch.cuda.current_stream()
    stepper = Stepper(iteration, "cuda", [g])
    for _ in range(WARMUP + 3):
        stepper.step()
    assert not stepper.captured and not stepper.enabled
    assert torch.cuda.current_stream() == caller
    # Nothing of the failed capture ran, and the generator goes on where the warm-ups left it.
    ref = torch.Generator("cuda").manual_seed(0)
    torch.testing.assert_close(x, sum(torch.rand(4, device="cuda", generator=ref)
                                      for _ in range(WARMUP + 3)))
    assert torch.isfinite(torch.rand(2, device="cuda")).all()  # so does the default generator


@pytest.mark.cuda
@needs_gpu
def test_streamed_batches_from_loader_workers_under_the_graph(cifar_root):
    """Pin-memory threads run while the graph is captured (capture_error_mode="thread_local")."""
    from gan_landscape.kinds.cuda_graph import WARMUP
    cfg = small_cfg(cifar_root, "cnn", "rsgan", "dataset.resident=false", "dataset.num_workers=2",
                    "train.device=cuda", "width=0.25")
    gan = ImageGAN(cfg, torch.device("cuda"), [0, 1])
    seen = []
    for _ in range(WARMUP + 5):
        gan.step()
        seen.append(gan.sampler.buffer.clone())
    assert gan.graph.captured
    replays = seen[WARMUP:]
    assert all(not torch.equal(a, b) for a, b in zip(replays, replays[1:]))
    assert torch.isfinite(gan.acc).all() and gan.acc[:, 2].tolist() == [WARMUP + 5.0] * 2
