"""Trainer.use_mpi: the same SFT run as a script on 1 process and under
``mpirun -np 2`` (docs/distributed.md) gives the same losses. Skips without
mpirun or libalign_mpi.so (a build without MPI)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unittest

from libalign import _raw

from . import _util

SCRIPT = r"""
import json, sys
import libalign as la
tok = la.Tokenizer.bytes()
model = la.Model(seed=3 + int(sys.argv[2]), vocab_size=257, n_layer=2, n_head=2, n_embd=32, max_seq_len=32)
data = la.Dataset([{"prompt": f"{a}+{b}=", "completion": str(a + b)} for a in range(5) for b in range(5)])
opt = la.Optimizer(model, learning_rate=3e-3)
with la.SFTTrainer(model, tok, data, opt, micro_batch=2, grad_accum=2, max_steps=4) as tr:
    rank, size = tr.use_mpi(timeout=60) if sys.argv[1] == "mpi" else (0, 1)
    losses = [s.loss for s in tr]
if rank == 0:
    print(json.dumps({"size": size, "losses": losses}))
"""


class TestMPI(unittest.TestCase):
    def test_two_ranks_equal_one(self) -> None:
        lib = os.path.join(os.path.dirname(os.path.realpath(_raw.lib._name)), "libalign_mpi.so")
        if shutil.which("mpirun") is None or not os.path.exists(lib):
            self.skipTest("no mpirun or libalign_mpi.so")
        d = _util.scratch_dir(self)
        script = d / "sft_mpi.py"
        script.write_text(SCRIPT)
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_btl_vader_single_copy_mechanism="none")
        one = subprocess.run([sys.executable, str(script), "none", "0"], capture_output=True, text=True,
                             env=env, timeout=300)
        self.assertEqual(one.returncode, 0, one.stderr)
        # rank 1 starts from other weights: use_mpi gives it rank 0's
        two = subprocess.run(["mpirun", "-np", "2", "--oversubscribe", "sh", "-c",
                              f'exec "{sys.executable}" "{script}" mpi "$OMPI_COMM_WORLD_RANK"'],
                             capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(two.returncode, 0, two.stderr)
        a = json.loads(one.stdout.strip().splitlines()[-1])
        b = json.loads(two.stdout.strip().splitlines()[-1])
        self.assertEqual((a["size"], b["size"]), (1, 2))
        self.assertEqual(len(a["losses"]), 4)
        for x, y in zip(a["losses"], b["losses"]):
            self.assertLessEqual(abs(x - y), 1e-5 * abs(x), (a, b))
        self.assertLess(a["losses"][-1], a["losses"][0])


if __name__ == "__main__":
    unittest.main()
