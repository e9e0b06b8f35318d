#!/usr/bin/env python3
"""PyTorch fp32 baseline for bench_generate.c: the same GPT-2 (pre-LN, tanh
GELU, tied head), a KV cache written here (preallocated per layer, filled in
place), greedy decoding with the chosen token's log-probability, a 32-token
prompt and ALIGN_BENCH_GEN_TOKENS (default 128) new tokens at batch 1 and 8.
Same threads (ALIGN_BENCH_THREADS) and BLAS settings as the C side.
Prints one JSON object per measurement, names matching bench_generate's.
  torch_generate.py            every config, each in its own process
  torch_generate.py <config>   one ("124M" or "tiny")"""
import json, math, os, subprocess, sys, time

from blas_kernel import blas_kernel

CFGS = {"124M": (12, 12, 768, 50257, 1024), "tiny": (4, 4, 256, 50304, 1024)}
PROMPT = 32


def run(name):
    import torch
    import torch.nn.functional as F
    threads = int(os.environ.get("ALIGN_BENCH_THREADS", "2"))
    new_tokens = int(os.environ.get("ALIGN_BENCH_GEN_TOKENS", "128"))
    iters = int(os.environ.get("ALIGN_BENCH_GEN_ITERS", "1"))
    torch.set_num_threads(threads)
    L, H, C, V, maxT = CFGS[name]
    hs = C // H
    g = torch.Generator().manual_seed(0)

    def w(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    wte, wpe = w(V, C), w(maxT, C)
    layers = []
    for _ in range(L):
        layers.append(dict(ln1w=torch.ones(C), ln1b=torch.zeros(C), qkvw=w(3 * C, C), qkvb=torch.zeros(3 * C),
                           projw=w(C, C), projb=torch.zeros(C), ln2w=torch.ones(C), ln2b=torch.zeros(C),
                           fcw=w(4 * C, C), fcb=torch.zeros(4 * C), fcpw=w(C, 4 * C), fcpb=torch.zeros(C)))
    lnfw, lnfb = torch.ones(C), torch.zeros(C)
    scale = 1.0 / math.sqrt(hs)

    def forward(idx, pos, kc, vc):
        """idx [B, T] new tokens at positions pos..pos+T-1; returns last-position logits [B, V]."""
        B, T = idx.shape
        x = wte[idx] + wpe[pos:pos + T]
        for l, p in enumerate(layers):
            h = F.layer_norm(x, (C,), p["ln1w"], p["ln1b"])
            q, k, v = F.linear(h, p["qkvw"], p["qkvb"]).split(C, dim=2)
            q, k, v = (z.view(B, T, H, hs).transpose(1, 2) for z in (q, k, v))
            kc[l][:, :, pos:pos + T] = k
            vc[l][:, :, pos:pos + T] = v
            keys, vals = kc[l][:, :, :pos + T], vc[l][:, :, :pos + T]
            att = (q @ keys.transpose(-2, -1)) * scale
            if T > 1:
                mask = torch.ones(T, pos + T, dtype=torch.bool).tril(diagonal=pos)
                att = att.masked_fill(~mask, float("-inf"))
            y = (att.softmax(dim=-1) @ vals).transpose(1, 2).reshape(B, T, C)
            x = x + F.linear(y, p["projw"], p["projb"])
            h = F.layer_norm(x, (C,), p["ln2w"], p["ln2b"])
            x = x + F.linear(F.gelu(F.linear(h, p["fcw"], p["fcb"]), approximate="tanh"), p["fcpw"], p["fcpb"])
        x = F.layer_norm(x[:, -1], (C,), lnfw, lnfb)
        return F.linear(x, wte)

    def generate(B, n):
        kc = [torch.empty(B, H, PROMPT + n, hs) for _ in range(L)]
        vc = [torch.empty(B, H, PROMPT + n, hs) for _ in range(L)]
        idx = torch.tensor([[(i * 7 + j * 3) % 26 + 97 for j in range(PROMPT)] for i in range(B)])
        logits = forward(idx, 0, kc, vc)
        out, lps = [], []
        for s in range(n):
            logp = logits.log_softmax(dim=-1)
            tok = logits[:, :257].argmax(dim=-1)  # byte-tokenizer ids, as the C side samples
            lps.append(logp.gather(1, tok[:, None]))
            out.append(tok)
            if s + 1 < n:
                logits = forward(tok[:, None], PROMPT + s, kc, vc)
        return torch.stack(out, 1), torch.cat(lps, 1)

    kernel = blas_kernel()
    with torch.inference_mode():
        for B in (1, 8):
            generate(B, 4)
            best = 1e30
            for _ in range(iters):
                t0 = time.perf_counter()
                toks, _ = generate(B, new_tokens)
                best = min(best, time.perf_counter() - t0)
                assert toks.shape == (B, new_tokens)
            print(json.dumps({"name": "generate_%s_b%d_p%d_n%d_tokens_per_s" % (name, B, PROMPT, new_tokens),
                              "value": B * new_tokens / best, "unit": "tokens/s", "kernel": kernel,
                              "impl": "torch"}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run(sys.argv[1])
    else:
        for n in CFGS:
            subprocess.run([sys.executable, __file__, n], check=True)
