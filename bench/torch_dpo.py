#!/usr/bin/env python3
"""PyTorch fp32 baseline for bench_dpo.c: the same GPT-2, shapes and threads;
one DPO step the way a PyTorch trainer does it at its best: chosen and
rejected of every pair in one batch, the reference's log-probs under
torch.inference_mode (no graph), the sigmoid loss, backward, grad clip, AdamW.
The reference runs every step (TRL's default); names match bench_dpo's
dpo_<cfg>_<pairs>x<T>_ms_per_step / _pairs_per_s.
  torch_dpo.py            every config, each in its own process
  torch_dpo.py <config>   one ("124M" or "tiny")
Run with OMP_WAIT_POLICY=PASSIVE (set here when missing) so torch's idle
OpenMP workers do not spin between the steps."""
import json, math, os, subprocess, sys, time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from blas_kernel import blas_kernel

CFGS = {"124M": (12, 12, 768, 50257, 1024, 2, 64), "tiny": (4, 4, 256, 50304, 1024, 8, 64)}


def run(name):
    import copy
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    threads = int(os.environ.get("ALIGN_BENCH_THREADS", "2"))
    iters = int(os.environ.get("ALIGN_BENCH_ITERS", "3"))
    torch.set_num_threads(threads)
    L, H, C, V, maxT, P, T = CFGS[name]

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
    policy = GPT()
    ref = copy.deepcopy(policy).eval()
    for q in ref.parameters():
        q.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6, weight_decay=0.0)
    # rows 0..P-1 chosen, P..2P-1 rejected; the response is the last T-32 tokens
    idx = torch.randint(0, 257, (2 * P, T))
    mask = torch.zeros(2 * P, T - 1)
    mask[:, 31:] = 1.0
    beta = 0.1

    def seq_logps(model, x):
        logits = model(x[:, :-1])
        lp = torch.gather(F.log_softmax(logits, dim=-1), 2, x[:, 1:].unsqueeze(2)).squeeze(2)
        return (lp * mask).sum(1)

    times = []
    for it in range(iters + 1):
        t0 = time.perf_counter()
        with torch.inference_mode():
            r = seq_logps(ref, idx)
        pi = seq_logps(policy, idx)
        h = (pi[:P] - r[:P]) - (pi[P:] - r[P:])
        loss = -F.logsigmoid(beta * h).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        if it > 0:
            times.append(time.perf_counter() - t0)
    ms = sum(times) / len(times) * 1e3
    kernel = blas_kernel()
    pre = "dpo_%s_%dx%d_" % (name, P, T)
    for suffix, v, unit in (("ms_per_step", ms, "ms"), ("pairs_per_s", P / (ms / 1e3), "pairs/s")):
        print(json.dumps({"name": pre + suffix, "value": v, "unit": unit, "kernel": kernel, "impl": "torch"}),
              flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1])
    else:
        for n in CFGS:
            subprocess.run([sys.executable, __file__, n], check=True)
