#!/usr/bin/env python3
"""PyTorch baseline for bench_llama.c: the same SmolLM2-135M-shaped Llama
(RMSNorm, rotary embeddings, grouped-query attention 9/3, SwiGLU, tied head),
same batch, threads and step (forward, backward, clip, AdamW), in fp32.
Prints one JSON object per measurement, names matching bench_llama's.
Attention is written out as in torch_train.py (python3-torch 1.13 has no
scaled_dot_product_attention).

  torch_llama.py                  the full step at 4 x 128 (bench_llama's names)
  torch_llama.py sft_full|sft_lora [BxT]
      bench_lora's smollm2 SFT step (default 2 x 64): every weight trains, or
      LoRA adapters r 16, alpha 32 on q_proj and v_proj written by hand (no
      peft): A Kaiming-uniform, B zero, y = x W^T + (alpha/r) (x A^T) B^T, the
      base frozen (embedding and tied head included), AdamW over the adapters.
      Prints lora_sft_smollm2_ms_per_step_<full|lora> and _peak_mb_<full|lora>
      (ru_maxrss of this process: run each variant in its own process)."""
import json, math, os, resource, sys, time

from blas_kernel import blas_kernel

L, H, KVH, C, I, V, B, T = 30, 9, 3, 576, 1536, 49152, 4, 128
HS = C // H


def main():
    global B, T
    variant = sys.argv[1] if len(sys.argv) > 1 else None
    if variant not in (None, "sft_full", "sft_lora"):
        sys.exit("torch_llama.py: unknown variant %r (sft_full, sft_lora)" % variant)
    if variant:
        B, T = (int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "2x64").split("x"))
    lora = variant == "sft_lora"
    R, ALPHA = 16, 32.0
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    threads = int(os.environ.get("ALIGN_BENCH_THREADS", "2"))
    iters = int(os.environ.get("ALIGN_BENCH_ITERS", "3"))
    torch.set_num_threads(threads)

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(C))

        def forward(self, x):
            return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    inv = 1.0 / (100000.0 ** (torch.arange(0, HS, 2).float() / HS))
    fr = torch.arange(T).float()[:, None] * inv[None, :]
    emb = torch.cat((fr, fr), -1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.ones(T, T, dtype=torch.bool).tril()

    def rope(x):
        x1, x2 = x[..., : HS // 2], x[..., HS // 2:]
        return x * cos + torch.cat((-x2, x1), -1) * sin

    class LoRALinear(nn.Module):
        """A frozen nn.Linear plus (alpha/r) (x A^T) B^T, PEFT's layout and init."""
        def __init__(self, base):
            super().__init__()
            self.base = base
            self.A = nn.Parameter(torch.empty(R, base.in_features))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            self.B = nn.Parameter(torch.zeros(base.out_features, R))

        def forward(self, x):
            return self.base(x) + (x @ self.A.t()) @ self.B.t() * (ALPHA / R)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = RMSNorm(), RMSNorm()
            self.q = nn.Linear(C, C, bias=False)
            self.k = nn.Linear(C, KVH * HS, bias=False)
            self.v = nn.Linear(C, KVH * HS, bias=False)
            self.o = nn.Linear(C, C, bias=False)
            self.gate = nn.Linear(C, I, bias=False)
            self.up = nn.Linear(C, I, bias=False)
            self.down = nn.Linear(I, C, bias=False)

        def forward(self, x):
            b, t, _ = x.shape
            h = self.n1(x)
            q = rope(self.q(h).view(b, t, H, HS).transpose(1, 2))
            k = rope(self.k(h).view(b, t, KVH, HS).transpose(1, 2))
            v = self.v(h).view(b, t, KVH, HS).transpose(1, 2)
            k = k.repeat_interleave(H // KVH, dim=1)
            v = v.repeat_interleave(H // KVH, dim=1)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HS))
            att = att.masked_fill(~mask[:t, :t], float("-inf")).softmax(dim=-1)
            y = att @ v
            x = x + self.o(y.transpose(1, 2).reshape(b, t, C))
            h = self.n2(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, C)
            self.layers = nn.ModuleList(Block() for _ in range(L))
            self.norm = RMSNorm()

        def forward(self, idx):
            x = self.embed(idx)
            for blk in self.layers:
                x = blk(x)
            return F.linear(self.norm(x), self.embed.weight)

    torch.manual_seed(0)
    model = Llama()
    if lora:
        for prm in model.parameters():
            prm.requires_grad_(False)
        for blk in model.layers:
            blk.q, blk.v = LoRALinear(blk.q), LoRALinear(blk.v)
    trainable = [prm for prm in model.parameters() if prm.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.1)
    idx = torch.randint(0, V, (B, T + 1))
    times = []
    for it in range(iters + 1):
        t0 = time.perf_counter()
        logits = model(idx[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), idx[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        if it > 0:
            times.append(time.perf_counter() - t0)
    ms = sum(times) / len(times) * 1e3
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if variant:
        v = variant[4:]
        for name, val, unit in (("ms_per_step_" + v, ms, "ms"), ("peak_mb_" + v, rss, "MB")):
            print(json.dumps({"name": "lora_sft_smollm2_" + name, "value": val, "unit": unit,
                              "kernel": blas_kernel(), "impl": "torch", "shape": "%dx%d" % (B, T)}),
                  flush=True)
        return 0
    pre = "llama_smollm2_135M_%dx%d_" % (B, T)
    for suffix, v, unit in (("ms_per_step", ms, "ms"), ("tokens_per_s", B * T / (ms / 1e3), "tokens/s"),
                            ("peak_rss_mb", rss, "MB")):
        print(json.dumps({"name": pre + suffix, "value": v, "unit": unit, "kernel": blas_kernel(),
                          "impl": "torch"}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
