#!/usr/bin/env python3
"""PyTorch baselines for bench_train.c: the same GPT-2 (pre-LN, tanh GELU,
tied head), same shapes, threads and step (forward, backward, AdamW), in
fp32 ("impl": "torch") and under bf16 autocast ("impl": "torch_bf16":
torch.autocast("cpu", dtype=torch.bfloat16) around forward and loss; fp32
master weights and AdamW, as PyTorch's mixed precision is meant to run).
Prints one JSON object per measurement, names matching bench_train's.
  torch_train.py                   every config and mode, each in its own process
  torch_train.py <config> [mode]   one ("124M" or "tiny"; "fp32" or "bf16")"""
import json, math, os, resource, subprocess, sys, time

from blas_kernel import blas_kernel

CFGS = {"124M": (12, 12, 768, 50257, 1024, 4, 64), "tiny": (4, 4, 256, 50304, 1024, 8, 128)}


def run(name, mode="fp32"):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    threads = int(os.environ.get("ALIGN_BENCH_THREADS", "2"))
    iters = int(os.environ.get("ALIGN_BENCH_ITERS", "3"))
    torch.set_num_threads(threads)
    L, H, C, V, maxT, B, T = CFGS[name]

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
            mask = torch.ones(t, t, dtype=torch.bool).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
            x = x + self.c_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(maxT, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C)

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for blk in self.h:
                x = blk(x)
            return F.linear(self.ln_f(x), self.wte.weight)

    torch.manual_seed(0)
    model = GPT()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    idx = torch.randint(0, V, (B, T))
    times = []
    for it in range(iters + 1):
        t0 = time.perf_counter()
        if mode == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(idx[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, V).float(), idx[:, 1:].reshape(-1))
        else:
            logits = model(idx[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, V), idx[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if it > 0:
            times.append(time.perf_counter() - t0)
    ms = sum(times) / len(times) * 1e3
    kernel = blas_kernel()
    if mode == "bf16":  # bf16 matmuls run in oneDNN (mkldnn) inside PyTorch, not in OpenBLAS
        kernel = "oneDNN bf16 (torch %s, mkldnn %s); fp32 parts: %s" % (
            torch.__version__, torch.backends.mkldnn.is_available(), kernel)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    pre = "train_%s_%dx%d_" % (name, B, T)
    for suffix, v, unit in (("ms_per_step", ms, "ms"), ("tokens_per_s", B * T / (ms / 1e3), "tokens/s"),
                            ("peak_rss_mb", rss, "MB")):
        print(json.dumps({"name": pre + suffix, "value": v, "unit": unit, "kernel": kernel,
                          "impl": "torch" if mode == "fp32" else "torch_bf16"}),
              flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "fp32")
    else:
        modes = os.environ.get("ALIGN_BENCH_TORCH_MODES", "fp32 bf16").split()
        for n in CFGS:
            for mode in modes:
                subprocess.run([sys.executable, __file__, n, mode], check=True)
