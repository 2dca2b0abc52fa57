"""FSDP for `rnacli train`: the frozen weights sharded over the processes with torch's FSDP2
(`fully_shard`), the few trainable tensors kept whole on every process.

    accelerate launch --config_file recipes/accelerate/fsdp.yaml -m rnacli train RECIPE

Why the trainable tensors stay whole: they are a few percent of the model (three `down_proj`
matrices: 2.4 % of Zephyr-7B), and everything rnacli does with them then works as on one
device: the delta reference (their original values, swapped in by `functional_call`), the fp32
master weights, AdamW and delta checkpoints; the loop averages their gradients itself, as under
DDP. What FSDP divides is the rest: the frozen weights, 97.6 % of a 7B model.

Units, as accelerate's FSDP2 preparation makes them: every decoder layer; the input embeddings;
the final norm with the LM head (kept gathered from forward to backward, where the head is used
first); and the root. A unit's weights are all-gathered just before its forward and freed after
it (`fsdp_reshard_after_forward`), in backward again. The shared prefix and the truncated
forward call the decoder and the head directly and may stop inside the layer stack: each unit
gathers what it needs itself, so both stay on (tests/test_distributed.py trains under FSDP with
them and gets a single process's weights).

The settings come from accelerate's FSDP plugin (the `fsdp_config` of the launch config, read
from the environment `accelerate launch` sets). Accelerate only fills the plugin on GPUs; on
CPUs (gloo) rnacli reads the same environment, so the CPU test runs the same code.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from rnacli.errors import RnacliError
from rnacli.models.forward import decoder_layers, decoder_of
from rnacli.recipe import Recipe


def fsdp_plugin(accelerator):
    """The launch's FSDP settings, or None when the run is not launched with an FSDP config."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is None and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        from accelerate.utils import FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* environment variables
    return plugin if plugin is not None and accelerator.num_processes > 1 else None


def check_fsdp(recipe: Recipe, plugin) -> None:
    """One clear error per setting rnacli's FSDP does not support."""
    if int(plugin.fsdp_version or 1) != 2:
        raise RnacliError(
            "FSDP: rnacli shards with FSDP2 (torch fully_shard); set `fsdp_version: 2` in the "
            "accelerate config's fsdp_config (recipes/accelerate/fsdp.yaml)"
        )
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision != "no":
        raise RnacliError(
            f"FSDP: accelerate's mixed_precision = '{precision}' would cast the sharded weights "
            "but not the trainable tensors rnacli keeps whole; set `mixed_precision: 'no'` in "
            "the accelerate config (the model loads in model.dtype, bf16 on CUDA, and rnacli "
            "keeps fp32 master weights itself)"
        )
    if plugin.cpu_ram_efficient_loading:
        raise RnacliError(
            "FSDP: `fsdp_cpu_ram_efficient_loading: true` is not supported (every process loads "
            "the model into CPU memory, then keeps only its shard); set it to false"
        )
    if plugin.activation_checkpointing:
        raise RnacliError(
            "FSDP: `fsdp_activation_checkpointing` is not used by rnacli; set it to false and "
            "set train.gradient_checkpointing = true in the recipe instead"
        )
    if plugin.cpu_offload is not None and type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy":
        raise RnacliError("FSDP: `fsdp_offload_params: true` is not supported; set it to false")
    if recipe.train.reference != "delta":
        raise RnacliError(
            "FSDP: train.reference = 'copy' would deep-copy a sharded model; use 'delta' (the "
            "default)"
        )


def shard_model(
    model: nn.Module, trainable: dict[str, nn.Parameter], plugin, device: torch.device
) -> None:
    """Shard `model` (loaded on the CPU) over the process group, in place, onto `device`; the
    trainable tensors are moved there whole."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    world = torch.distributed.get_world_size()
    mesh = init_device_mesh(device.type, (world,))
    ignored = set(trainable.values())
    with torch.no_grad():
        for param in ignored:
            param.data = param.data.to(device)
    reshard = plugin.reshard_after_forward
    reshard = True if reshard is None else bool(reshard)
    kwargs = {"mesh": mesh, "ignored_params": ignored}
    for layer in decoder_layers(decoder_of(model)[1]):
        fully_shard(layer, reshard_after_forward=reshard, **kwargs)
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    norm = getattr(decoder_of(model)[1], "norm", None)
    tied = head is not None and embed.weight is head.weight
    if not tied:
        fully_shard(embed, reshard_after_forward=reshard, **kwargs)
    # A tied embedding must live in one unit with the head: a parameter may not be in two
    tail = [m for m in (embed if tied else None, norm, head) if m is not None]
    fully_shard(tail, reshard_after_forward=False, **kwargs)
    fully_shard(model, **kwargs)
    # FSDP2 makes the first module to run forward the root: run the root once, so that the
    # passes may call the decoder or the head directly afterwards
    with torch.no_grad():
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=False)
