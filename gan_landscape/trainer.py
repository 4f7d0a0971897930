"""The image-GAN training loop: resume, train, log, sample, checkpoint, stop on divergence."""
import logging
import time

import torch
from torchvision.utils import save_image
from tqdm import tqdm

from . import checkpoint
from .fast import make_step
from .image_gan import ImageGAN

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    pass


def setup_backends(cfg, device):
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        # TF32 changes fp32 results; the paper's numbers are fp32, so it is opt-in.
        torch.backends.cuda.matmul.allow_tf32 = bool(cfg.train.tf32)
        torch.backends.cudnn.allow_tf32 = bool(cfg.train.tf32)


def resume(gan, rd, device) -> int:
    state = checkpoint.latest(rd.path, map_location=device)
    if state is None:
        return 0
    gan.load_state_dict(state)
    checkpoint.set_rng_state(state["rng"])
    rd.truncate_metrics(state["step"])
    log.info(f"resuming {rd.path} from iteration {state['step']}")
    return state["step"]


def save(gan, rd, step, keep=3):
    if not gan.weights_finite():
        raise Diverged(f"non-finite weights at iteration {step}; kept the last good checkpoint")
    checkpoint.save(rd.path, step, {**gan.state_dict(), "rng": checkpoint.rng_state()}, keep=keep)


def train(cfg, rd, device) -> dict:
    setup_backends(cfg, device)
    t = cfg.train
    gan = ImageGAN(cfg, device)
    start = resume(gan, rd, device)
    if start == 0:
        save(gan, rd, 0)
    z_fixed = torch.randn(64, gan.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    step_fn, done = make_step(gan, t.fast and t.iters - start > 10)
    it = start + done
    t0, it0 = time.time(), start
    bar = tqdm(total=t.iters, initial=it, desc=f"{cfg.loss.name} {cfg.model.name} w{cfg.width}",
               disable=None, mininterval=1.0, dynamic_ncols=True)
    try:
        while it < t.iters:
            step_fn()
            it += 1
            bar.update(1)
            if it % t.log_every == 0 or it == t.iters:
                _log(gan, rd, bar, it, (it - it0) / (time.time() - t0))
            if t.fid_every and it % t.fid_every == 0:
                _log_fid(gan, cfg, rd, it)
            if it % t.sample_every == 0 or it == t.iters:
                _grid(gan, rd, z_fixed, it)
            if it % t.ckpt_every == 0 and it < t.iters:
                save(gan, rd, it)
        save(gan, rd, it)
    except Diverged as e:
        log.error(f"diverged: {e}")
        return rd.update_summary(status="diverged", error=str(e), iters=it)
    finally:
        bar.close()
    seconds = time.time() - t0
    return rd.update_summary(status="finished", iters=it, seconds=round(seconds, 1),
                             it_per_s=round((it - it0) / max(seconds, 1e-9), 2), dataset=cfg.dataset.name,
                             model=cfg.model.name, width=cfg.width, loss=cfg.loss.name, seed=cfg.seed,
                             experiment=cfg.experiment_name, fast=bool(t.fast and device.type == "cuda"))


def _log(gan, rd, bar, it, it_per_s):
    rec = {"step": it, **gan.pop_losses(), "it_per_s": round(it_per_s, 2)}
    rec["g_lr"], rec["d_lr"] = gan.lrs()
    if not all(map(_finite, (rec["d_loss"], rec["g_loss"]))):
        rd.log_metrics(rec)
        raise Diverged(f"loss is {rec['d_loss']} (D) / {rec['g_loss']} (G) at iteration {it}")
    rd.log_metrics(rec)
    bar.set_postfix(d=f"{rec['d_loss']:.3f}", g=f"{rec['g_loss']:.3f}", refresh=False)


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def _grid(gan, rd, z, it):
    (rd.path / "samples").mkdir(exist_ok=True)
    save_image(gan.sample(z), rd.path / "samples" / f"step_{it:07d}.png", nrow=8, normalize=True,
               value_range=(-1, 1))
    if gan.G_ema is not None:
        save_image(gan.sample(z, ema=True), rd.path / "samples" / f"ema_step_{it:07d}.png", nrow=8,
                   normalize=True, value_range=(-1, 1))


def _log_fid(gan, cfg, rd, it):
    from .fid import score_generator
    res = score_generator(gan.G, cfg, n_fake=cfg.train.fid_samples)
    rd.log_metrics({"step": it, "fid": res["fid"], "fid_n_fake": cfg.train.fid_samples})
