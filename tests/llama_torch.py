#!/usr/bin/env python3
"""Fidelity of libalign's Llama architecture against an independent PyTorch
implementation (written here from the Hugging Face modelling conventions:
RMSNorm, rotate_half rotary embeddings, repeat_kv grouped-query attention,
SwiGLU, nn.Linear [out, in] weights), run by tests/sh/llama_torch.sh.

  llama_torch.py write DIR    random models as Hugging Face folders + references
  llama_torch.py compare DIR  libalign's outputs (DIR/*/out.safetensors) vs the references,
                              and its BF16 save (DIR/*/saved/) vs the source weights

Two models: "llama" (LlamaForCausalLM, GQA 4/2 heads, untied head, F32, one
file) and "qwen2" (Qwen2ForCausalLM, q/k/v biases, tied head, BF16 weights in
two shards with model.safetensors.index.json). The reference runs in float64
on the weights as stored (BF16 values widened exactly), each sequence alone at
its own length; libalign runs in float32 on a padded batch. Compared: logits,
per-token log-probs, and the gradients of sum(w * logprob) for every tensor.
Safetensors is written and read by hand (8-byte header length, JSON, data)."""
import json
import struct
import sys
from pathlib import Path

import torch

L, C, NH, KVH, I, V, T = 2, 32, 4, 2, 48, 97, 10
HS = C // NH
LENGTHS = [10, 7]
TOL = 1e-4


def to_bytes(t: torch.Tensor, dtype: str) -> bytes:
    t = t.detach().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().tobytes()
    if dtype == "BF16":  # the top 16 bits of the float32 after round-to-nearest-even
        return t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    raise ValueError(dtype)


def write_st(path: Path, tensors: dict, dtype: str = "F32", meta: dict = None) -> None:
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        raw = to_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = meta or {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path: Path) -> dict:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        if e["dtype"] == "F32":
            t = torch.frombuffer(bytearray(body[a:b]), dtype=torch.float32)
        elif e["dtype"] == "BF16":
            t = torch.frombuffer(bytearray(body[a:b]), dtype=torch.int16).view(torch.bfloat16).float()
        else:
            raise ValueError(e["dtype"])
        out[name] = t.reshape(e["shape"])
    return out


def random_state(seed: int, bias: bool, tied: bool) -> dict:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.15):
        return torch.randn(*shape, generator=g) * std

    sd = {"model.embed_tokens.weight": rnd(V, C, std=0.5)}
    for l in range(L):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = 1 + rnd(C, std=0.1)
        sd[p + "self_attn.q_proj.weight"] = rnd(C, C, std=0.3)
        sd[p + "self_attn.k_proj.weight"] = rnd(KVH * HS, C, std=0.3)
        sd[p + "self_attn.v_proj.weight"] = rnd(KVH * HS, C)
        if bias:
            sd[p + "self_attn.q_proj.bias"] = rnd(C, std=0.1)
            sd[p + "self_attn.k_proj.bias"] = rnd(KVH * HS, std=0.1)
            sd[p + "self_attn.v_proj.bias"] = rnd(KVH * HS, std=0.1)
        sd[p + "self_attn.o_proj.weight"] = rnd(C, C)
        sd[p + "post_attention_layernorm.weight"] = 1 + rnd(C, std=0.1)
        sd[p + "mlp.gate_proj.weight"] = rnd(I, C)
        sd[p + "mlp.up_proj.weight"] = rnd(I, C)
        sd[p + "mlp.down_proj.weight"] = rnd(C, I)
    sd["model.norm.weight"] = 1 + rnd(C, std=0.1)
    if not tied:
        sd["lm_head.weight"] = rnd(V, C, std=0.3)
    return sd


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def forward(sd: dict, ids: list, theta: float, eps: float, tied: bool) -> torch.Tensor:
    """Logits [len, V] of one sequence, in the parameters' dtype."""
    n = len(ids)
    x = sd["model.embed_tokens.weight"][torch.tensor(ids)]
    inv = 1.0 / (theta ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    fr = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat((fr, fr), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    mask = torch.ones(n, n, dtype=torch.bool).tril()
    for l in range(L):
        p = f"model.layers.{l}."

        def lin(h, name):
            y = h @ sd[p + name + ".weight"].T
            b = sd.get(p + name + ".bias")
            return y + b if b is not None else y

        h = rms(x, sd[p + "input_layernorm.weight"], eps)
        q = lin(h, "self_attn.q_proj").view(n, NH, HS).transpose(0, 1)
        k = lin(h, "self_attn.k_proj").view(n, KVH, HS).transpose(0, 1)
        v = lin(h, "self_attn.v_proj").view(n, KVH, HS).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // KVH, dim=0)  # repeat_kv: head h reads kv head h // (NH/KVH)
        v = v.repeat_interleave(NH // KVH, dim=0)
        s = (q @ k.transpose(-1, -2)) / HS ** 0.5
        s = s.masked_fill(~mask, float("-inf")).softmax(-1)
        a = (s @ v).transpose(0, 1).reshape(n, C)
        x = x + a @ sd[p + "self_attn.o_proj.weight"].T
        h = rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        g = h @ sd[p + "mlp.gate_proj.weight"].T
        u = h @ sd[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ sd[p + "mlp.down_proj.weight"].T
    x = rms(x, sd["model.norm.weight"], eps)
    head = sd["model.embed_tokens.weight"] if tied else sd["lm_head.weight"]
    return x @ head.T


MODELS = {
    # name: (architecture, model_type, q/k/v bias, tied, dtype, shards, rope_theta, rms_norm_eps)
    "llama": ("LlamaForCausalLM", "llama", False, False, "F32", 1, 500.0, 1e-5),
    "qwen2": ("Qwen2ForCausalLM", "qwen2", True, True, "BF16", 2, 10000.0, 1e-6),
}


def write(root: Path) -> None:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, V, (len(LENGTHS), T), generator=g)
    w = torch.randn(len(LENGTHS), T - 1, generator=g)
    for i, n in enumerate(LENGTHS):
        tokens[i, n:] = 0
        w[i, n - 1:] = 0
    for seed, (name, (arch, mtype, bias, tied, dtype, shards, theta, eps)) in enumerate(MODELS.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        sd = random_state(10 + seed, bias, tied)
        if dtype == "BF16":  # the model is what the file holds
            sd = {k: v.to(torch.bfloat16).float() for k, v in sd.items()}
        names = list(sd)
        if shards == 1:
            write_st(d / "model.safetensors", sd, dtype)
        else:
            half = len(names) // 2
            parts = [names[:half], names[half:]]
            wm = {}
            for j, part in enumerate(parts):
                fn = f"model-{j + 1:05d}-of-{shards:05d}.safetensors"
                write_st(d / fn, {k: sd[k] for k in part}, dtype)
                wm.update({k: fn for k in part})
            (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
        cfg = {"architectures": [arch], "model_type": mtype, "hidden_size": C, "intermediate_size": I,
               "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": KVH,
               "vocab_size": V, "max_position_embeddings": 64, "rope_theta": theta, "rms_norm_eps": eps,
               "hidden_act": "silu", "tie_word_embeddings": tied, "rope_scaling": None,
               "torch_dtype": "bfloat16" if dtype == "BF16" else "float32"}
        if mtype == "qwen2":
            cfg.update({"use_sliding_window": False, "sliding_window": 32})
        (d / "config.json").write_text(json.dumps(cfg))
        # reference in float64
        p64 = {k: v.double().requires_grad_(True) for k, v in sd.items()}
        logits = torch.zeros(len(LENGTHS), T, V, dtype=torch.float64)
        lps = torch.zeros(len(LENGTHS), T - 1, dtype=torch.float64)
        loss = 0
        for i, n in enumerate(LENGTHS):
            lg = forward(p64, tokens[i, :n].tolist(), theta, eps, tied)
            lp = lg.log_softmax(-1)[torch.arange(n - 1), tokens[i, 1:n]]
            loss = loss + (w[i, : n - 1].double() * lp).sum()
            logits[i, :n] = lg.detach()
            lps[i, : n - 1] = lp.detach()
        loss.backward()
        ref = {"tokens": tokens.float(), "lengths": torch.tensor(LENGTHS, dtype=torch.float32),
               "dlp": w, "logits": logits.reshape(-1, V), "logprobs": lps}
        for k, v in p64.items():
            ref["grad." + k] = v.grad
        write_st(d / "ref.safetensors", ref)


def compare(root: Path) -> None:
    worst = 0.0
    for name in MODELS:
        ref = read_st(root / name / "ref.safetensors")
        out = read_st(root / name / "out.safetensors")
        rows = []
        for what in ("logits", "logprobs"):
            r, o = ref[what].double(), out[what].double()
            rows.append((what, (r - o).abs().max().item(), ((r - o).abs().max() / r.abs().max()).item()))
        ga, gr = 0.0, 0.0
        grads = [k for k in ref if k.startswith("grad.")]
        for k in grads:
            if k not in out:
                raise SystemExit(f"FAIL {name}: libalign has no gradient for {k[5:]}")
            r, o = ref[k].double(), out[k].double()
            ga = max(ga, (r - o).abs().max().item())
            gr = max(gr, ((r - o).abs().max() / max(r.abs().max().item(), 1e-12)).item())
        rows.append((f"gradients ({len(grads)} tensors)", ga, gr))
        # libalign's BF16 save: the same names, each weight rounded to bf16
        src = {}
        for f in sorted((root / name).glob("model*.safetensors")):
            src.update(read_st(f))
        saved = read_st(root / name / "saved" / "model.safetensors")
        if set(saved) != set(src):
            raise SystemExit(f"FAIL {name}: saved tensors {sorted(set(saved) ^ set(src))} differ from the source")
        for k, v in src.items():
            if not torch.equal(saved[k], v.to(torch.bfloat16).float()):
                raise SystemExit(f"FAIL {name}: saved {k} is not the bf16 rounding of the source")
        cfg = json.loads((root / name / "saved" / "config.json").read_text())
        if cfg["architectures"] != [MODELS[name][0]] or cfg["num_key_value_heads"] != KVH:
            raise SystemExit(f"FAIL {name}: saved config.json {cfg}")
        print(f"{name}: saved as BF16: {len(saved)} tensors, each the bf16 rounding of the source")
        for what, a, rel in rows:
            print(f"{name}: {what}: max abs diff {a:.3g}, max rel diff {rel:.3g}")
            worst = max(worst, a)
    if worst > TOL:
        raise SystemExit(f"FAIL: libalign differs from the PyTorch reference by {worst:.3g} > {TOL}")
    print(f"ok - Llama logits, log-probs and gradients within {TOL} of PyTorch (worst {worst:.3g})")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "compare"):
        raise SystemExit(__doc__)
    (write if sys.argv[1] == "write" else compare)(Path(sys.argv[2]))
