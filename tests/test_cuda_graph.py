"""The CUDA-graph step (train.cuda_graph) against the eager one, checkpoints across the two, and
streamed batches under a graph. The CUDA tests run in `make gpu-check` (pytest -m cuda); on a CPU
the same ImageGAN code runs eagerly, and what can be checked there is checked here too."""
import warnings

import pytest
import torch

from conftest import make_cfg
from fakes import write_cifar10
from gan_landscape.cuda_graph import WARMUP
from gan_landscape.image_gan import ImageGAN

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    write_cifar10(root, n_per_batch=16)
    return root


def cfg_for(root, device, *extra):
    return make_cfg("dataset=cifar10", "model=cnn", "width=0.25", "loss=rsgan", f"dataset.root={root}",
                    "dataset.check_integrity=false", f"train.device={device}", "train.ema=0.999",
                    "train.iters=1000", "train.lr_decay_start=50", *extra)


def losses_per_iteration(gan, n):
    rows = []
    for _ in range(n):
        before = gan.acc[:, :2].clone()
        gan.step()
        rows.append(gan.acc[:, :2] - before)
    return torch.stack(rows)


def test_cpu_ignores_cuda_graph_and_steps_once_per_call(cifar_root):
    gan = ImageGAN(cfg_for(cifar_root, "cpu", "train.cuda_graph=true"), torch.device("cpu"), [0])
    for _ in range(WARMUP + 2):
        gan.step()
    assert not gan.graph.enabled and not gan.graph.captured
    assert gan.step_count == int(gan.step_t.item()) == WARMUP + 2
    assert gan.acc[0, 2].item() == WARMUP + 2


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("seeds", [[0], [0, 1]])
def test_graph_gives_the_eager_losses_iteration_by_iteration(cifar_root, seeds):
    torch.backends.cudnn.deterministic = True
    rows = {}
    for graph in (False, True):
        gan = ImageGAN(cfg_for(cifar_root, "cuda", f"train.cuda_graph={graph}"), torch.device("cuda"), seeds)
        torch.backends.cudnn.benchmark = False
        rows[graph] = losses_per_iteration(gan, 100)
        assert gan.graph.captured == graph and gan.step_count == 100
    torch.testing.assert_close(rows[True], rows[False], rtol=1e-3, atol=1e-4)


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


def _to_cpu(v):
    if torch.is_tensor(v):
        return v.cpu()
    if isinstance(v, dict):
        return {k: _to_cpu(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_cpu(x) for x in v]
    return v
