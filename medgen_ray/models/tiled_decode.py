"""The VAE's tiled decode split across a replica's ranks.

diffusers' HunyuanVideo VAEs decode a large video as overlapping tiles (space, and for
HunyuanVideo also time), each tile one call of `vae.decoder` on a slice of the latents, no state
carried between calls, then blend the tiles. Here every rank runs the VAE's own `decode` three
times over: once with a recording decoder (the tiles, in call order, and their output shapes;
nothing decoded), then rank r decodes tiles r, r + N, ... and each tile is broadcast from its rank,
then once more with a decoder that hands back the decoded tiles in order, so diffusers' own
blending makes the video: equal to one process's tiled decode, with 1/N of the decoder work per
rank. Wan's VAE decodes frame by frame with a cache carried between calls: not split (rank 0
decodes, as before).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

SPLITTABLE = ("AutoencoderKLHunyuanVideo", "AutoencoderKLHunyuanVideo15")


def splits_decode(vae: Any) -> bool:
    """Whether this VAE's tiled decode can be split across ranks."""
    return type(vae).__name__ in SPLITTABLE


def tile_output_shape(vae: Any, tile: torch.Tensor) -> tuple[int, ...]:
    """What `vae.decoder` returns for a latent tile: causal in time (one frame, then
    temporal-ratio frames per latent frame), spatial-ratio pixels per latent pixel."""
    b, _, t, h, w = tile.shape
    s, r = vae.config.spatial_compression_ratio, vae.config.temporal_compression_ratio
    return (b, vae.config.out_channels, (t - 1) * r + 1, h * s, w * s)


class _Recorder(torch.nn.Module):
    """A decoder that records its tiles and returns zeros of the decoded shape."""

    def __init__(self, shape: Callable[[torch.Tensor], tuple[int, ...]]):
        super().__init__()
        self.shape, self.tiles = shape, []

    def forward(self, tile: torch.Tensor) -> torch.Tensor:
        self.tiles.append(tile)
        return torch.zeros(self.shape(tile), dtype=tile.dtype, device=tile.device)


class _Replay(torch.nn.Module):
    def __init__(self, decoded: list[torch.Tensor]):
        super().__init__()
        self.decoded = iter(decoded)

    def forward(self, tile: torch.Tensor) -> torch.Tensor:
        return next(self.decoded)


def _with_decoder(vae: Any, decoder: torch.nn.Module, run: Callable[[], Any]) -> Any:
    own = vae.decoder
    vae.decoder = decoder
    try:
        return run()
    finally:
        vae.decoder = own


def split_decode(vae: Any, rank: int, world: int) -> None:
    """Make `vae._decode` split its tiles across the `world` ranks of the default process group
    (every rank must decode the same latents at the same time; each gets the whole video). Counts
    the tiles this rank decoded in `vae.split_decode_tiles`."""
    import torch.distributed as dist

    if not splits_decode(vae):
        raise ValueError(f"{type(vae).__name__}: its tiled decode carries state between tiles; not split")
    own_decode = vae._decode
    shape = lambda tile: tile_output_shape(vae, tile)
    vae.split_decode_tiles = 0

    def _decode(z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        recorder = _Recorder(shape)
        _with_decoder(vae, recorder, lambda: own_decode(z, *args, **kwargs))
        decoded = []
        for i, tile in enumerate(recorder.tiles):
            if i % world == rank:
                out = vae.decoder(tile).contiguous()
                if tuple(out.shape) != shape(tile):
                    raise RuntimeError(f"{type(vae).__name__}: a tile decoded to {tuple(out.shape)}, not {shape(tile)}")
                vae.split_decode_tiles += 1
            else:
                out = torch.empty(shape(tile), dtype=tile.dtype, device=tile.device)
            decoded.append(out)
        for i, out in enumerate(decoded):
            dist.broadcast(out, src=i % world)
        return _with_decoder(vae, _Replay(decoded), lambda: own_decode(z, *args, **kwargs))

    vae._decode = _decode
