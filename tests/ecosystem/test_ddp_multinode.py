"""One run across two nodes: ``torchrun --nnodes 2`` with the c10d rendezvous, simulated by two torchrun
processes on this machine (one per "node", gloo): the table equals one process on the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_ddp import STEPS, _free_port, _model, _train

from optprobe.sinks import read_table

RANK_SCRIPT = Path(__file__).with_name("ddp_rank.py")


def _torchrun(node_rank: int, port: int, out_dir: Path) -> list[str]:
    """The command each node runs (the README's, with 127.0.0.1 for the first node's address)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--node-rank", str(node_rank), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
        "--rdzv-id", "optprobe-test", "--local-addr", "127.0.0.1", str(RANK_SCRIPT), str(out_dir),
    ]  # fmt: skip


@pytest.mark.slow
def test_two_nodes_under_torchrun_write_the_single_process_table(tmp_path):
    _train(_model(), tmp_path / "single")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    nodes = [
        subprocess.Popen(_torchrun(rank, port, tmp_path / "ranks"), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]  # fmt: skip
    try:
        outputs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(outputs)
    assert sorted(line for out in outputs for line in out.splitlines() if line.startswith("rank ")) == [
        "rank 0 of 2", "rank 1 of 2",
    ]  # fmt: skip
    single, ranks = read_table(tmp_path / "single"), read_table(tmp_path / "ranks")
    assert len(single) == STEPS + 1
    pd.testing.assert_frame_equal(single, ranks, check_exact=False, rtol=1e-9, atol=1e-12)
