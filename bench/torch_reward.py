#!/usr/bin/env python3
"""PyTorch fp32 baseline for bench_reward.c: the same GPT-2 body (pre-LN, tanh
GELU) with a scalar head instead of the LM head, the same shapes and threads,
and the same step: B prompts x K = 4 responses of T tokens in one forward,
the score at each sequence's last token, the per-prompt Bradley-Terry loss
averaged over the prompt's 6 pairs (InstructGPT), backward, gradient clip,
AdamW. Written as PyTorch at its best on CPU: one batched forward of all
B*K sequences, no LM head, torch.set_num_threads (and OMP_WAIT_POLICY=PASSIVE
from bench/run.sh).
Prints one JSON object per measurement, names matching bench_reward's.
  torch_reward.py            every config, each in its own process
  torch_reward.py <config>   one ("tiny" or "124M")"""
import json, math, os, resource, subprocess, sys, time

from blas_kernel import blas_kernel

CFGS = {"tiny": (4, 4, 256, 50304, 8, 4, 64), "124M": (12, 12, 768, 50257, 4, 4, 64)}


def run(name):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    threads = int(os.environ.get("ALIGN_BENCH_THREADS", "2"))
    iters = int(os.environ.get("ALIGN_BENCH_ITERS", "3"))
    torch.set_num_threads(threads)
    L, H, C, V, B, K, T = CFGS[name]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (z.view(b, t, H, c // H).transpose(1, 2) for z in (q, k, v))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // H))
            att = att.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf")).softmax(dim=-1)
            y = att @ v
            x = x + self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class RM(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(1024, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C)
            self.score = nn.Linear(C, 1)

        def forward(self, idx, last):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for blk in self.h:
                x = blk(x)
            x = self.ln_f(x)
            return self.score(x[torch.arange(idx.shape[0]), last]).squeeze(-1)

    torch.manual_seed(0)
    model = RM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    idx = torch.randint(0, 257, (B * K, T))
    last = torch.full((B * K,), T - 1)
    w, l = zip(*[(i, j) for i in range(K) for j in range(K) if i < j])  # rank i better than j
    w, l = torch.tensor(w), torch.tensor(l)
    times = []
    for it in range(iters + 1):
        t0 = time.perf_counter()
        r = model(idx, last).view(B, K)
        loss = -F.logsigmoid(r[:, w] - r[:, l]).mean(dim=1).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if it > 0:
            times.append(time.perf_counter() - t0)
    ms = sum(times) / len(times) * 1e3
    kernel = blas_kernel()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    pre = "reward_%s_%dx%dx%d_" % (name, B, K, T)
    pairs = B * K * (K - 1) // 2
    for suffix, v, unit in (("ms_per_step", ms, "ms"), ("pairs_per_s", pairs / (ms / 1e3), "pairs/s"),
                            ("peak_rss_mb", rss, "MB")):
        print(json.dumps({"name": pre + suffix, "value": v, "unit": unit, "kernel": kernel, "impl": "torch"}),
              flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1])
    else:
        for n in CFGS:
            subprocess.run([sys.executable, __file__, n], check=True)
