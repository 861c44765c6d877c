"""What a training run leaves behind, beside its checkpoints: exported LoRA (both formats),
the loss curve (CSV + PNG), validation videos, and metrics in MLflow or W&B when installed.

Layout under <storage_path>/<name>/ (local or s3://):
  lora/pytorch_lora_weights.safetensors   diffusers format
  lora/medgen_lora_comfy.safetensors      original keys (ComfyUI)
  loss.csv, loss.png
  validation/step-XXXXXXXX/<i>.mp4
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import torch

from medgen_ray.config import TrainConfig
from medgen_ray.core.encode import write_mp4


def train_run_dir(cfg: TrainConfig) -> str:
    """The folder of a training run under storage_path."""
    return f"{cfg.storage_path.rstrip('/')}/{cfg.name}"


def export_dir(cfg: TrainConfig) -> str:
    """Where the run's LoRA files are exported."""
    return cfg.export_dir or f"{train_run_dir(cfg)}/lora"


def log_metrics(metrics: dict[str, Any], step: int) -> None:
    """Send metrics to MLflow (MLFLOW_TRACKING_URI set) or W&B (WANDB_PROJECT set) if installed."""
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    if os.environ.get("MLFLOW_TRACKING_URI"):
        try:
            import mlflow
        except ImportError:
            mlflow = None
        if mlflow is not None:
            mlflow.log_metrics(numbers, step=step)
    if os.environ.get("WANDB_PROJECT"):
        try:
            import wandb
        except ImportError:
            wandb = None
        if wandb is not None:
            if wandb.run is None:
                wandb.init(project=os.environ["WANDB_PROJECT"])
            wandb.log(numbers, step=step)


_VALIDATION_PIPES: dict[tuple[str, str | None], Any] = {}


def _validation_pipe(cfg: TrainConfig):
    """The pipeline's VAE and text encoders, loaded once per worker process and kept on the CPU
    between validations (a reload per validation is a multi-GB read on the real model)."""
    from medgen_ray.models.registry import load_model

    key = (cfg.model, cfg.weights)
    if key not in _VALIDATION_PIPES:
        _VALIDATION_PIPES[key] = load_model(cfg.model, cfg.weights, "cpu", kind="video")
    return _VALIDATION_PIPES[key]


def validate(cfg: TrainConfig, transformer: torch.nn.Module, step: int, out: str) -> list[str]:
    """Generate the fixed validation prompts with the transformer as it is now."""
    from medgen_ray.models.video import generate_video

    v = cfg.validation
    pipe = _validation_pipe(cfg)
    device = next(transformer.parameters()).device
    pipe.transformer = transformer  # the trained one; the loaded base transformer is dropped
    pipe.to(device)
    paths = []
    was_training = transformer.training
    transformer.eval()
    try:
        for i, prompt in enumerate(v.prompts):
            with torch.no_grad():
                video = generate_video(pipe, prompt, height=v.height, width=v.width, num_frames=v.num_frames,
                                       steps=v.steps, seed=v.seed + i)
            path = f"{out}/validation/step-{step:08d}/{i}.mp4"
            write_mp4((np.clip(video, 0, 1) * 255).astype(np.uint8), path)
            paths.append(path)
    finally:
        transformer.train(was_training)
        for module in pipe.components.values():  # free the device for training again
            if isinstance(module, torch.nn.Module) and module is not transformer:
                module.to("cpu")
    return paths


def write_loss_curve(history: list[dict[str, Any]], out: str) -> None:
    """Write loss.csv and loss.png of a run's history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["step", "epoch", "loss", "lr", "step_s"])
    writer.writeheader()
    writer.writerows({k: h[k] for k in writer.fieldnames} for h in history)
    with fsspec.open(f"{out}/loss.csv", "w") as fh:
        fh.write(text.getvalue())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["loss"] for h in history], lw=1, label="loss")
    if len(history) >= 10:
        k = max(5, len(history) // 20)
        smooth = np.convolve([h["loss"] for h in history], np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, lw=2, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    with fsspec.open(f"{out}/loss.png", "wb") as fh:
        fh.write(png.getvalue())


def finish_run(cfg: TrainConfig, transformer: torch.nn.Module, lora: dict[str, torch.Tensor],
               ema: dict[str, torch.Tensor] | None, history: list[dict[str, Any]],
               videos: bool = True) -> dict[str, str]:
    """Export the LoRA (EMA weights when kept), the loss curve and the final validation videos
    (unless `videos` is false)."""
    from medgen_ray.train.lora import save_diffusers_lora, save_original_lora, transformer_config

    if ema is not None:
        lora = {_peft_key(k): v for k, v in ema.items()}
    out = train_run_dir(cfg)
    tcfg = transformer_config(transformer)  # with its class: the family's original keys
    with tempfile.TemporaryDirectory() as tmp:
        save_diffusers_lora(lora, cfg.lora.rank, cfg.lora.alpha, tmp)
        save_original_lora(lora, tcfg, cfg.lora.rank, cfg.lora.alpha, tmp)
        fs, dest = fsspec.core.url_to_fs(export_dir(cfg))
        fs.makedirs(dest, exist_ok=True)
        for f in Path(tmp).iterdir():
            fs.put(str(f), f"{dest.rstrip('/')}/{f.name}")
    write_loss_curve(history, out)
    # ZeRO-3 partitions the weights across ranks: rank 0 alone cannot run the model
    sharded = cfg.strategy == "deepspeed" and cfg.zero_stage == 3
    paths = validate(cfg, transformer, history[-1]["step"] if history else 0, out) \
        if videos and cfg.validation.prompts and not sharded else []
    return {"lora": export_dir(cfg), "loss": f"{out}/loss.png", "videos": ",".join(paths)}


def _peft_key(name: str) -> str:
    """transformer.named_parameters() name -> peft state-dict key (adapter name dropped)."""
    return name.replace(".default.weight", ".weight").replace(".default.bias", ".bias")
