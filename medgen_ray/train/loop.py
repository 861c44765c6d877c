"""The LoRA training loop that every Ray Train worker runs. It reads top to bottom.

Data order: each worker reads its share of the shards through Ray Data, shuffled in a local
buffer seeded by (seed, epoch, rank), and groups clips by bucket into micro-batches. Every
optimizer step records the clip ids it used; a checkpoint keeps the ids consumed so far in the
current epoch, so a resumed run (crash, lost worker) continues that epoch with the clips not
yet trained on instead of starting it again.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from medgen_ray.config import TrainConfig
from medgen_ray.models.families import VideoFamily, family_of
from medgen_ray.train.flow import flow_loss, noisy_latents, sample_sigmas, timesteps_for
from medgen_ray.train.precompute import TEXT_MASKS, collate, decode_row

LOOP_STATE = "loop_state.json"
PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}


@dataclass
class LoopState:
    """What a checkpoint restores: step, epoch and the clips consumed this epoch."""

    step: int = 0
    epoch: int = 0
    consumed: list[str] = field(default_factory=list)  # clip ids trained on in this epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # per optimizer step: loss, lr, clip ids
    ema: dict[str, list] | None = None


def bucket_batches(rows: Iterator[dict[str, Any]], micro_batch: int, skip: set[str]
                   ) -> Iterator[tuple[list[str], dict[str, torch.Tensor]]]:
    """Group rows of the same bucket into micro-batches; clips already consumed are skipped."""
    pending: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["clip_id"] in skip:
            continue
        group = pending.setdefault(row["bucket"], [])
        group.append(row)
        if len(group) == micro_batch:
            del pending[row["bucket"]]
            yield [r["clip_id"] for r in group], collate([decode_row(r) for r in group])


def without_caption(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch as if every prompt were empty: each prompt stream one zero token, pooled zero."""
    out = dict(batch)
    for key, mask_key in TEXT_MASKS.items():
        if key in out:
            out[key], out[mask_key] = out[key][:, :1] * 0, out[mask_key][:, :1]
    if "pooled" in out:
        out["pooled"] = out["pooled"] * 0
    return out


def flow_step_loss(model, batch: dict[str, torch.Tensor], cfg: TrainConfig, gen: torch.Generator,
                   device: torch.device, dtype: torch.dtype, family: VideoFamily | None = None) -> torch.Tensor:
    """The flow-matching loss of one micro-batch (noise, sigma sampling, forward, MSE); the
    family turns the batch into its transformer's inputs."""
    from medgen_ray.models.video import model_inputs

    family = family or family_of(cfg.model)
    x0 = batch["latent"].to(device, torch.float32)
    n = x0.shape[0]
    noise = torch.randn(x0.shape, generator=gen).to(device)
    sigmas = sample_sigmas(n, sampling=cfg.timestep_sampling, shift=cfg.flow_shift, generator=gen).to(device)
    if cfg.caption_dropout and float(torch.rand(1, generator=gen)) < cfg.caption_dropout:
        batch = without_caption(batch)  # unconditional step
    inner = getattr(model, "module", model)  # DDP / DeepSpeed wrap the transformer
    inputs = model_inputs(family, inner, noisy_latents(x0, noise, sigmas), timesteps_for(sigmas), batch,
                          cfg.guidance, device, dtype, cfg.context_parallel.ulysses)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        pred = model(**inputs, return_dict=False)[0]
    return flow_loss(pred, x0, noise)


def _ema_update(ema: dict[str, torch.Tensor], named: list[tuple[str, torch.nn.Parameter]], decay: float) -> None:
    with torch.no_grad():
        for name, p in named:
            ema[name].mul_(decay).add_(p.detach().float().cpu(), alpha=1 - decay)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: LoRA on the transformer, shard iteration, checkpoints, exports."""
    import ray.train
    import torch.distributed as dist

    from medgen_ray.models.registry import load_transformer
    from medgen_ray.models.video import unpadded_attention
    from medgen_ray.train.lora import add_lora
    from medgen_ray.train.outputs import finish_run, log_metrics, train_run_dir, validate
    from medgen_ray.train.strategy import make_strategy

    cfg = TrainConfig.model_validate(config["train"])
    family = family_of(cfg.model)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    on_gpu = cfg.use_gpu and torch.cuda.is_available()
    device = ray.train.torch.get_device() if on_gpu else torch.device("cpu")
    dtype = PRECISION[cfg.mixed_precision] if on_gpu else torch.float32
    # Context parallelism: ranks cp*i .. cp*i+cp-1 are data-parallel rank i and train one clip
    # together (the group's first rank reads it and hands it to the others).
    cp = cfg.context_parallel.ulysses
    dp, dp_rank = world // cp, rank // cp

    # 1. Model: frozen base in the compute dtype, LoRA weights in float32 (same init on every rank).
    torch.manual_seed(cfg.seed)
    transformer = load_transformer(cfg.model, cfg.weights, dtype)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    add_lora(transformer, cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets, cfg.lora.dropout)
    if cfg.unpadded_attention and cfg.micro_batch == 1:
        unpadded_attention(transformer)  # collate() pads nothing at batch 1 (where the family allows it)
    transformer.to(device)
    cp_group = None
    if cp > 1:
        from torch.distributed.device_mesh import init_device_mesh

        from medgen_ray.models.parallel import Degrees, context_parallel

        mesh = init_device_mesh(device.type, (dp, 1, cp), mesh_dim_names=("dp", "ring", "ulysses"))
        context_parallel(transformer, Degrees(cp), mesh=mesh, training=True)
        cp_group = mesh["ulysses"].get_group()
    named = [(n, p) for n, p in transformer.named_parameters() if p.requires_grad]
    for _, p in named:
        p.data = p.data.float()
    strategy = make_strategy(transformer, [p for _, p in named], cfg, world)

    # 2. Resume: optimizer/LoRA from the strategy's files, counters and data position from ours.
    state = LoopState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            strategy.load(folder)
            state = LoopState(**json.loads((Path(folder) / LOOP_STATE).read_text()))
    ema = None
    if cfg.ema_decay:
        ema = ({k: torch.tensor(v) for k, v in state.ema.items()} if state.ema
               else {n: p.detach().float().cpu().clone() for n, p in named})

    # 3. Steps. Noise and timesteps come from a generator seeded per (rank, step), so a resumed
    # run draws what an uninterrupted one would have.
    shard = ray.train.get_dataset_shard("train")  # under context parallelism: all rows, each worker
    cache = ShardCache(cfg.cache_mb_per_worker * 2**20, cfg.shuffle_buffer, cfg.seed, dp_rank)
    losses: list[float] = []
    step_ids: list[str] = []
    t_last = time.perf_counter()
    while state.step < cfg.max_steps:
        skip = set(state.consumed)
        reads = rank % cp == 0  # this worker reads clips (its context-parallel group's first rank)
        rows = cache.epoch_rows(shard, state.epoch) if reads else iter(())
        batches = bucket_batches(rows if cp == 1 else data_parallel_rows(rows, dp, dp_rank), cfg.micro_batch, skip)
        while state.step < cfg.max_steps:
            item = next(batches, None)
            if cp > 1:  # the group's first rank hands its clip (or the end of its epoch) to the others
                item = share_in_group(item, rank - rank % cp, cp_group, dist)
            if not _all_have(item is not None, world, dist):
                break  # a worker ran out: the epoch ends for everyone, keeping steps in lockstep
            ids, batch = item
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state.step * 1009 + dp_rank * 17 + len(losses))
            with strategy.sync_context():
                loss = flow_step_loss(strategy.model, batch, cfg, gen, device, dtype, family)
                # each rank's LoRA gradient is its tokens' share: the group's sum is the clip's
                # gradient, and DDP averages over all dp*cp ranks, so scale by cp
                stepped = strategy.micro_step(loss * cp if cp > 1 else loss)
            losses.append(float(loss.detach()))
            step_ids += ids if reads else []
            if not stepped:
                continue
            state.step += 1
            mean_loss = _mean_across(sum(losses) / len(losses), world, dist, device)
            used = _gather_ids(step_ids, world, dist)
            state.consumed += used
            losses, step_ids = [], []
            if ema is not None:
                _ema_update(ema, named, cfg.ema_decay)
            now = time.perf_counter()
            entry = {"step": state.step, "epoch": state.epoch, "loss": mean_loss, "lr": strategy.lr(),
                     "step_s": now - t_last, "clips": used}
            t_last = now
            state.history.append(entry)
            if rank == 0 and state.step % cfg.log_every == 0:
                log_metrics(entry, state.step)
                print(f"step {state.step}/{cfg.max_steps} epoch {state.epoch} loss {mean_loss:.4f} "
                      f"lr {entry['lr']:.2e} {entry['step_s']:.2f} s/step", flush=True)
            _kill_drill(cfg, rank, world, state.step)
            last = state.step >= cfg.max_steps
            if state.step % cfg.checkpoint_every == 0 or last:
                _report(strategy, state, ema, rank, {k: v for k, v in entry.items() if k != "clips"})
            if rank == 0 and cfg.validation.every_steps and state.step % cfg.validation.every_steps == 0 \
                    and not last and not (cfg.strategy == "deepspeed" and cfg.zero_stage == 3):
                validate(cfg, transformer, state.step, train_run_dir(cfg))
        if state.step < cfg.max_steps:
            state.epoch += 1
            state.consumed = []
    if rank == 0:
        # a context-parallel transformer generates only with its whole group: no validation videos
        finish_run(cfg, transformer, strategy.lora_state(), ema, state.history, videos=cp == 1)
    elif cfg.strategy == "deepspeed" and cfg.zero_stage == 3:
        strategy.lora_state()  # the gather is collective: every rank takes part


class ShardCache:
    """This worker's rows, kept after the first full pass when they fit in `limit` bytes.

    Ray Data restarts its streaming execution at every epoch (about 1.5 s on a 2-core
    machine): noise for a 55k-clip epoch, but most of the wall time when a small set is
    trained for many epochs. Cached epochs are shuffled by a permutation seeded like the
    streamed ones, so both paths give every clip once per epoch in a seeded order.
    """

    def __init__(self, limit: int, shuffle_buffer: int, seed: int, rank: int):
        self.limit, self.shuffle_buffer, self.seed, self.rank = limit, shuffle_buffer, seed, rank
        self.rows: list[dict[str, Any]] | None = None

    def _seed(self, epoch: int) -> int:
        return self.seed + 7919 * epoch + self.rank

    def epoch_rows(self, shard, epoch: int) -> Iterator[dict[str, Any]]:
        if self.rows is not None:
            order = torch.randperm(len(self.rows), generator=torch.Generator().manual_seed(self._seed(epoch)))
            yield from (self.rows[i] for i in order.tolist())
            return
        kept: list[dict[str, Any]] | None = [] if self.limit > 0 else None
        size = 0
        for b in shard.iter_batches(batch_size=1, batch_format="numpy",
                                    local_shuffle_buffer_size=self.shuffle_buffer if self.shuffle_buffer > 1 else None,
                                    local_shuffle_seed=self._seed(epoch)):
            for row in _rows(b):
                if kept is not None:
                    size += sum(len(v) for v in row.values() if isinstance(v, bytes))
                    if size <= self.limit:
                        kept.append(row)
                    else:
                        kept = None
                yield row
        self.rows = kept  # only a complete pass is cached (an epoch cut short leaves None)


def _rows(batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
    n = len(batch["clip_id"])
    for i in range(n):
        yield {k: v[i] for k, v in batch.items()}


def data_parallel_rows(rows: Iterator[dict[str, Any]], dp: int, dp_rank: int) -> Iterator[dict[str, Any]]:
    """The rows of data-parallel rank `dp_rank` of `dp` when every worker reads all rows (context
    parallelism): a stable hash of the clip id decides."""
    import zlib

    for row in rows:
        if dp == 1 or zlib.crc32(str(row["clip_id"]).encode()) % dp == dp_rank:
            yield row


def share_in_group(item: Any, leader: int, group: Any, dist) -> Any:
    """The leader's item (a micro-batch, or None at the end of its epoch) on every rank of its
    context-parallel group."""
    box = [item]
    dist.broadcast_object_list(box, src=leader, group=group)
    return box[0]


def _all_have(have: bool, world: int, dist) -> bool:
    if world == 1:
        return have
    flag = torch.tensor([1 if have else 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _mean_across(value: float, world: int, dist, device) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item() / world)


def _gather_ids(ids: list[str], world: int, dist) -> list[str]:
    if world == 1:
        return list(ids)
    out: list[list[str]] = [[] for _ in range(world)]
    dist.all_gather_object(out, list(ids))
    return [i for part in out for i in part]


def _report(strategy, state: LoopState, ema, rank: int, metrics: dict[str, Any]) -> None:
    import ray.train

    with tempfile.TemporaryDirectory() as folder:
        strategy.save(folder, rank)
        if rank == 0:
            saved = asdict(state)
            saved["ema"] = {k: v.tolist() for k, v in ema.items()} if ema is not None else None
            (Path(folder) / LOOP_STATE).write_text(json.dumps(saved))
        has_files = any(Path(folder).iterdir())
        ckpt = ray.train.Checkpoint.from_directory(folder) if has_files else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=f"step-{state.step:08d}")


def _kill_drill(cfg: TrainConfig, rank: int, world: int, step: int) -> None:
    """Fault drill: SIGKILL one worker once, at the configured step (marker file makes it once)."""
    if cfg.kill_rank_at_step != step or rank != min(1, world - 1):
        return
    import fsspec

    marker = f"{cfg.storage_path.rstrip('/')}/{cfg.name}/.kill_drill_done"
    fs, path = fsspec.core.url_to_fs(marker)
    if fs.exists(path):
        return
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe(path, b"killed")
    os.kill(os.getpid(), signal.SIGKILL)
