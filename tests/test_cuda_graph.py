"""The CUDA-graph step (train.cuda_graph): its fallback logic (on the CPU, with stand-ins for the
CUDA calls), then on a GPU (`make gpu-check` runs `pytest -m cuda`): graph vs eager on every state
tensor in each precision, memory layout, net and n_dis; checkpoints loaded into a captured model;
failed captures that fall back or raise, and leave memory, streams and generators as they were."""
import logging
import warnings

import pytest
import torch

from conftest import make_cfg
from fakes import write_cifar10
from gan_landscape.kinds import cuda_graph
from gan_landscape.kinds.cuda_graph import WARMUP, Stepper, not_capturable
from gan_landscape.kinds.image_gan import ImageGAN

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
NOT_PERMITTED = "CUDA error: operation not permitted when stream is capturing"
INVALIDATED = "CUDA error: operation failed due to a previous error during capture"


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    write_cifar10(root, n_per_batch=16)
    return root


def cfg_for(root, device, *extra):
    return make_cfg("dataset=cifar10", "model=cnn", "width=0.25", "loss=rsgan", f"dataset.root={root}",
                    "dataset.check_integrity=false", f"train.device={device}", "train.ema=0.999",
                    "train.iters=1000", "train.lr_decay_start=50", *extra)


def chained(*messages, kinds=None):
    """The exception torch.cuda.graph's exit raises: the last message, raised while handling the
    ones before (as capture_end's error arrives during the iteration's)."""
    kinds = kinds or [RuntimeError] * len(messages)
    exc = None
    for kind, msg in zip(kinds, messages):
        new = kind(msg)
        new.__context__ = exc
        exc = new
    return exc


# ---------------------------------------------------------------- which failures fall back (CPU)

def test_only_stream_capture_errors_fall_back():
    assert not_capturable(chained(NOT_PERMITTED, INVALIDATED)) == NOT_PERMITTED
    assert not_capturable(chained(NOT_PERMITTED, kinds=[torch.AcceleratorError])) == NOT_PERMITTED
    assert not_capturable(RuntimeError("Cannot call CUDAGeneratorImpl::current_seed during CUDA graph "
                                       "capture.")).startswith("Cannot call")
    raised = [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        chained("CUDA out of memory. Tried to allocate 2.00 GiB", INVALIDATED,
                kinds=[torch.cuda.OutOfMemoryError, torch.AcceleratorError]),
        torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
        chained("CUDA error: an illegal memory access was encountered", INVALIDATED,
                kinds=[torch.AcceleratorError, torch.AcceleratorError]),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (64x3 and 4x5)"),
        chained("a bug", INVALIDATED, kinds=[ValueError, RuntimeError]),
        KeyError("capture"),
    ]
    for e in raised:
        assert not_capturable(e) is None, repr(e)


class _FakeGraph:
    def __init__(self):
        self.replays, self.generators = 0, []

    def register_generator_state(self, g):
        self.generators.append(g)

    def replay(self):
        self.replays += 1


@pytest.fixture
def cpu_stepper(monkeypatch):
    """A Stepper whose CUDA calls are stand-ins: `failure` is what recording the iteration raises
    (after running it once, as a capture does on the host); `abandoned` counts the clean-ups."""
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: "caller")
    monkeypatch.setattr(torch.cuda, "CUDAGraph", _FakeGraph)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(cuda_graph, "_new_pool", lambda: None)
    state = {"slot": 0, "failure": None, "abandoned": 0}

    def iteration():
        state["slot"] += 1  # host-side state the iteration advances (a sampler's slot)

    def record(self, graph, pool, caller):
        self.iteration()
        if state["failure"] is not None:
            raise state["failure"]

    def abandon(self, graph, pool, refs, caller):
        state["abandoned"] += 1

    monkeypatch.setattr(Stepper, "_on_side_stream", lambda self, fn: fn())
    monkeypatch.setattr(Stepper, "_record", record)
    monkeypatch.setattr(Stepper, "_abandon", abandon)
    stepper = Stepper(iteration, "cpu", host_state=(lambda: state["slot"],
                                                    lambda s: state.__setitem__("slot", s)))
    stepper.enabled = stepper.requested = True
    return stepper, state


def test_a_captured_step_replays(cpu_stepper):
    stepper, state = cpu_stepper
    assert stepper.status.startswith("eager (not captured yet")
    for _ in range(WARMUP + 3):
        stepper.step()
    assert stepper.captured and stepper.status == "captured"
    assert stepper.graph.replays == 3 and state["slot"] == WARMUP + 1 and not state["abandoned"]


def test_an_uncapturable_step_falls_back_with_the_host_state_restored(cpu_stepper, caplog):
    stepper, state = cpu_stepper
    state["failure"] = chained(NOT_PERMITTED, INVALIDATED)
    with caplog.at_level(logging.WARNING, logger="gan_landscape.kinds.cuda_graph"):
        for _ in range(WARMUP + 3):
            stepper.step()
    # one iteration per step: the recorded one was undone (slot restored) and run again eagerly
    assert state["slot"] == WARMUP + 3 and state["abandoned"] == 1
    assert not stepper.captured and not stepper.enabled
    assert stepper.status == f"eager ({NOT_PERMITTED})"
    assert "cannot be captured" in caplog.text and NOT_PERMITTED in caplog.text


@pytest.mark.parametrize("failure", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
    ValueError("a bug in the iteration"),
], ids=["oom", "kernel-fault", "bug"])
def test_any_other_capture_failure_is_raised_after_the_clean_up(cpu_stepper, failure):
    stepper, state = cpu_stepper
    state["failure"] = failure
    for _ in range(WARMUP):
        stepper.step()
    with pytest.raises(type(failure)):
        stepper.step()
    assert state["abandoned"] == 1 and state["slot"] == WARMUP  # the recorded iteration undone
    assert not stepper.captured and stepper.status == f"failed ({type(failure).__name__}: {failure})"


def test_status_is_off_without_cuda_and_in_the_runs_outcome(cifar_root):
    assert Stepper(lambda: None, "cpu").status == "off"
    assert Stepper(lambda: None, "cpu", enabled=False).status == "off"
    gan = ImageGAN(cfg_for(cifar_root, "cpu", "train.cuda_graph=true"), torch.device("cpu"), [0, 1])
    gan.step()
    assert [o["cuda_graph"] for o in gan.outcome()] == ["off", "off"]


def test_cpu_ignores_cuda_graph_and_steps_once_per_call(cifar_root):
    gan = ImageGAN(cfg_for(cifar_root, "cpu", "train.cuda_graph=true"), torch.device("cpu"), [0])
    for _ in range(WARMUP + 2):
        gan.step()
    assert not gan.graph.enabled and not gan.graph.captured
    assert gan.step_count == int(gan.step_t.item()) == WARMUP + 2
    assert gan.acc[0, 2].item() == WARMUP + 2


def test_eager_runs_use_plain_adam(cifar_root):
    gan = ImageGAN(cfg_for(cifar_root, "cpu", "train.cuda_graph=true"), torch.device("cpu"), [0])
    for opt in (gan.g_opt, gan.d_opt):
        group = opt.param_groups[0]
        assert isinstance(group["lr"], float) and not group["capturable"]
    gan.step()
    assert isinstance(gan.g_opt.param_groups[0]["lr"], float)


# ---------------------------------------------------------------- on a GPU

def all_state(gan) -> dict[str, torch.Tensor]:
    """Every tensor an iteration updates: nets (BatchNorm statistics and spectral-norm vectors
    included), EMA, both Adams' moments and steps, the step counter and the loss sums."""
    out = {"step_t": gan.step_t, "acc": gan.acc}
    for tag, net in (("G", gan.G), ("D", gan.D), ("G_ema", gan.G_ema)):
        out.update({f"{tag}.{k}": t for k, t in net.state_dict().items()})
    for tag, opt in (("g_opt", gan.g_opt), ("d_opt", gan.d_opt)):
        for i, st in enumerate(opt.state.values()):
            out.update({f"{tag}.{i}.{k}": torch.as_tensor(t) for k, t in st.items()})
    return {k: t.detach().float().cpu().clone() for k, t in out.items()}


@pytest.fixture
def deterministic():
    """cuDNN's deterministic algorithms for graph-vs-eager comparisons; every flag ImageGAN or the
    test sets is put back afterwards, so later tests run as configured."""
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.deterministic = True
    yield
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
     torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) = flags


def cuda_gan(root, seeds, *extra, graph=True):
    """A CUDA ImageGAN made for a graph (capturable Adam); graph=False runs the very same
    iteration eagerly, so that a difference is the graph's."""
    gan = ImageGAN(cfg_for(root, "cuda", "train.cuda_graph=true", *extra), torch.device("cuda"), seeds)
    torch.backends.cudnn.benchmark = False
    gan.graph.enabled = graph
    return gan


def assert_same_state(a: dict, b: dict, rtol: float, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol, msg=lambda m, k=k: f"{k}: {m}")


CASES = {  # id: (overrides, seeds, rtol, atol)
    "cnn-fp32": ((), [0, 1], 1e-3, 1e-5),
    "cnn-tf32-channels_last": (("train.precision=tf32", "train.channels_last=true"), [0, 1], 1e-3, 1e-5),
    "cnn-bf16": (("train.precision=bf16",), [0, 1], 2e-2, 1e-3),
    "resnet-fp32-ndis5": (("model=resnet", "width=0.125", "train.n_dis=5"), [0, 1], 1e-3, 1e-5),
    "resnet-bf16-channels_last": (("model=resnet", "width=0.125", "train.precision=bf16",
                                   "train.channels_last=true"), [0], 2e-2, 1e-3),
}


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("case", list(CASES))
def test_graph_updates_every_state_tensor_as_eager(cifar_root, deterministic, case):
    extra, seeds, rtol, atol = CASES[case]
    n = WARMUP + 6  # warm-ups, the capture, then replays
    states = {}
    for graph in (True, False):
        gan = cuda_gan(cifar_root, seeds, "train.batch_size=16", *extra, graph=graph)
        for _ in range(n):
            gan.step()
        assert (gan.graph.status == "captured") if graph else gan.graph.status.startswith("eager (not")
        states[graph] = all_state(gan)
        del gan
    assert states[True]["acc"][:, 2].tolist() == [float(n)] * len(seeds)
    assert any(k.startswith("G_ema.") and k.endswith(".running_var") for k in states[True])
    assert any(k.endswith(".exp_avg_sq") for k in states[True])
    assert_same_state(states[True], states[False], rtol, atol)


@pytest.mark.cuda
@needs_gpu
def test_plain_adam_of_eager_runs_steps_as_capturable_adam(cifar_root, deterministic):
    """Eager runs use plain Adam (float lr), graphs capturable Adam (tensor lr): the same updates."""
    runs = {}
    for graph in (True, False):
        gan = ImageGAN(cfg_for(cifar_root, "cuda", f"train.cuda_graph={graph}", "train.batch_size=16"),
                       torch.device("cuda"), [0])
        torch.backends.cudnn.benchmark = False
        gan.graph.enabled = False
        assert gan.g_opt.param_groups[0]["capturable"] == graph
        for _ in range(4):
            gan.step()
        runs[graph] = all_state(gan)
    assert_same_state(runs[True], runs[False], rtol=1e-3, atol=1e-5)


@pytest.mark.cuda
@needs_gpu
def test_a_checkpoint_loads_into_a_captured_model(cifar_root, deterministic):
    """Loading is in place: the captured graph goes on from the loaded nets, Adam state and
    generators, as a fresh run resumed from the same checkpoint does."""
    source = cuda_gan(cifar_root, [0, 1], "train.batch_size=16", graph=False)
    for _ in range(7):
        source.step()
    saved = source.state_dicts()
    captured = cuda_gan(cifar_root, [0, 1], "train.batch_size=16")
    for _ in range(WARMUP + 2):
        captured.step()
    assert captured.graph.captured
    captured.load_state_dicts(saved, 7)
    resumed = cuda_gan(cifar_root, [0, 1], "train.batch_size=16", graph=False)
    resumed.load_state_dicts(saved, 7)
    for gan in (captured, resumed):
        gan.acc.zero_()
        for _ in range(3):
            gan.step()
    assert captured.graph.captured and captured.step_count == resumed.step_count == 10
    assert_same_state(all_state(captured), all_state(resumed), rtol=1e-3, atol=1e-5)


@pytest.mark.cuda
@needs_gpu
def test_graph_checkpoint_loads_in_eager_cpu_and_back(cifar_root):
    fast = ImageGAN(cfg_for(cifar_root, "cuda"), torch.device("cuda"), [0, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            fast.step()
    assert fast.graph.captured
    assert not [w for w in caught if "AccumulateGrad" in str(w.message)]
    states = fast.state_dicts()
    assert [s["step"] for s in states] == [5, 5]
    # A CPU run takes the nets and Adam state (its generators cannot take CUDA's Philox states).
    cpu = ImageGAN(cfg_for(cifar_root, "cpu"), torch.device("cpu"), [0, 1])
    cpu.load_state_dicts([_to_cpu(s) for s in states], 5)
    again = ImageGAN(cfg_for(cifar_root, "cuda"), torch.device("cuda"), [0, 1])
    again.load_state_dicts(states, 5)
    z = torch.randn(2, 4, 128)
    torch.testing.assert_close(cpu.generate(z), again.generate(z.cuda()).cpu(), rtol=1e-3, atol=1e-3)
    cpu.step()
    assert cpu.step_count == 6 and torch.isfinite(cpu.acc).all()
    # The generator states read after graph replays are where the graph left them: the resumed
    # run's next (eager) iteration draws what the graph's next replay draws.
    before = fast.acc.clone()
    fast.step()
    again.step()
    assert again.step_count == int(again.step_t.item()) == 6
    torch.testing.assert_close(again.acc, fast.acc - before, rtol=1e-3, atol=1e-4)


def _reserved_after_cleanup() -> int:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return torch.cuda.memory_reserved()


def _big_iteration(x, g, fail=None):
    """An iteration that takes 256 MiB while it runs; `fail(x)` is called inside a capture."""
    def iteration():
        tmp = torch.empty(64 << 20, device="cuda")  # 256 MiB, from the graph's pool under capture
        x.add_(torch.rand(4, device="cuda", generator=g) + tmp[:1].zero_())
        if fail is not None and torch.cuda.is_current_stream_capturing():
            fail(x)
    return iteration


def _check_a_capture_still_works():
    y = torch.zeros(2, device="cuda")
    ok = Stepper(lambda: y.add_(1), "cuda")
    for _ in range(WARMUP + 2):
        ok.step()
    assert ok.status == "captured" and y.tolist() == [WARMUP + 2.0] * 2


@pytest.mark.cuda
@needs_gpu
def test_a_failed_capture_trains_on_eagerly_and_gives_its_memory_back():
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.zeros(4, device="cuda")
    slot = {"n": 0}

    def host_sync(x):
        slot["n"] += 100  # host state that the restore must undo
        x.sum().item()    # a host sync: the capture fails

    caller = torch.cuda.current_stream()
    stepper = Stepper(_big_iteration(x, g, host_sync), "cuda", [g],
                      host_state=(lambda: slot["n"], lambda n: slot.__setitem__("n", n)))
    for _ in range(WARMUP):
        stepper.step()
    baseline = _reserved_after_cleanup()
    for _ in range(3):
        stepper.step()
    assert not stepper.captured and not stepper.enabled and slot["n"] == 0
    assert stepper.status.startswith("eager (") and "captur" in stepper.status
    assert torch.cuda.current_stream() == caller
    # Nothing of the failed capture ran, and the generator goes on where the warm-ups left it.
    ref = torch.Generator("cuda").manual_seed(0)
    torch.testing.assert_close(x, sum(torch.rand(4, device="cuda", generator=ref)
                                      for _ in range(WARMUP + 3)))
    assert torch.isfinite(torch.rand(2, device="cuda")).all()  # so does the default generator
    # The failed graph's pool was released: the 256 MiB it took went back to the device.
    assert _reserved_after_cleanup() <= baseline + (32 << 20)
    _check_a_capture_still_works()


@pytest.mark.cuda
@needs_gpu
def test_out_of_memory_in_a_capture_is_raised_and_cleaned_up():
    g = torch.Generator("cuda").manual_seed(0)
    x = torch.zeros(4, device="cuda")

    def oom(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated in the test)")

    caller = torch.cuda.current_stream()
    stepper = Stepper(_big_iteration(x, g, oom), "cuda", [g])
    for _ in range(WARMUP):
        stepper.step()
    baseline = _reserved_after_cleanup()
    with pytest.raises(torch.cuda.OutOfMemoryError):
        stepper.step()
    assert not stepper.captured and torch.cuda.current_stream() == caller
    assert _reserved_after_cleanup() <= baseline + (32 << 20)
    _check_a_capture_still_works()


@pytest.mark.cuda
@needs_gpu
def test_streamed_batches_are_pinned_once(cifar_root, monkeypatch):
    calls = []
    pin = torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: calls.append(1) or pin(self, *a, **k))
    cfg = cfg_for(cifar_root, "cuda", "dataset.resident=false", "dataset.num_workers=0", "train.batch_size=8")
    gan = ImageGAN(cfg, torch.device("cuda"), [0, 1])
    per_stage = gan.sampler.slots * 2
    assert len(calls) == per_stage  # the loader pinned each batch; nothing pinned them again
    for _ in range(3):
        gan.step()
    assert len(calls) == 4 * per_stage


def _to_cpu(v):
    if torch.is_tensor(v):
        return v.cpu()
    if isinstance(v, dict):
        return {k: _to_cpu(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_cpu(x) for x in v]
    return v
