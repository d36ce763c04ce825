"""One node's rank of a DDP run under ``torchrun`` (test_ddp_multinode.py starts two, as two nodes): the
training loop of test_ddp.py with the Probe on the DDP-wrapped model, writing to ``sys.argv[1]``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from test_ddp import _model, _train  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # from torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR/PORT
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        print(f"rank {rank} of {world}", flush=True)
        _train(nn.parallel.DistributedDataParallel(_model()), sys.argv[1], rank, world)
        dist.barrier()  # every rank is done before any tears the group down
    finally:
        dist.destroy_process_group()
