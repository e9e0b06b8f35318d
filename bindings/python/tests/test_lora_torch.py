"""LoRA against a PyTorch reference written here (no peft / transformers):
a GPT-2 forward with adapters y = x W + b + (alpha/r) (x A^T) B^T on the
Conv1D layers, as PEFT computes them with fan_in_fan_out. Adapters written
by PyTorch in PEFT's layout load into libalign and give the same log-probs;
one AdamW step of the adapters in libalign equals torch.optim.AdamW's on the
same loss, with the base untouched; merging equals the merged weights; what
libalign writes reads back in PyTorch to the same tensors."""
from __future__ import annotations

import json
import math
import struct
import unittest
from pathlib import Path
from typing import Dict, List

import libalign as la

from . import _util

try:
    import torch
except ImportError:  # tools/deps.sh installs python3-torch
    torch = None

L, H, C, V = 2, 2, 32, 257
R, ALPHA = 4, 8.0
PREFIX = "base_model.model.transformer."
SITES = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
SHAPES = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
SEQS = [[72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 256], [1, 200, 3, 40, 5, 60, 7, 80, 9, 100, 11, 12]]


def write_safetensors(path: Path, tensors: Dict[str, "torch.Tensor"]) -> None:
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path: Path) -> Dict[str, "torch.Tensor"]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(body[a:b]), dtype=torch.float32).reshape(e["shape"])
    return out


def gpt2_logprobs(w: Dict[str, "torch.Tensor"], ad: Dict[str, "torch.Tensor"], scale: float,
                  seqs: List[List[int]]) -> "torch.Tensor":
    """Sum over sequences of the token log-probs, float64, with adapters ad
    (PEFT names) on the sites they name."""
    ln = torch.nn.functional.layer_norm
    hs = C // H
    total = torch.zeros((), dtype=torch.float64)
    for ids in seqs:
        n = len(ids)
        x = w["wte.weight"][torch.tensor(ids)] + w["wpe.weight"][:n]
        mask = torch.tril(torch.ones(n, n, dtype=torch.bool))

        def lin(l: int, site: str, inp: "torch.Tensor") -> "torch.Tensor":
            p = f"h.{l}.{site}"
            y = inp @ w[p + ".weight"] + w[p + ".bias"]  # Conv1D: [in][out]
            a = ad.get(PREFIX + p + ".lora_A.weight")
            if a is not None:
                b = ad[PREFIX + p + ".lora_B.weight"]
                y = y + scale * (inp @ a.T) @ b.T
            return y

        for l in range(L):
            p = f"h.{l}."
            h = ln(x, (C,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
            q, k, v = lin(l, "attn.c_attn", h).split(C, dim=-1)
            q, k, v = (t.view(n, H, hs).transpose(0, 1) for t in (q, k, v))
            att = ((q @ k.transpose(-1, -2)) / math.sqrt(hs)).masked_fill(~mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(0, 1).reshape(n, C)
            x = x + lin(l, "attn.c_proj", y)
            h = ln(x, (C,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
            f = torch.nn.functional.gelu(lin(l, "mlp.c_fc", h), approximate="tanh")
            x = x + lin(l, "mlp.c_proj", f)
        x = ln(x, (C,), w["ln_f.weight"], w["ln_f.bias"], 1e-5)
        lp = (x @ w["wte.weight"].T).log_softmax(-1)
        total = total + lp[torch.arange(n - 1), torch.tensor(ids[1:])].sum()
    return total


@unittest.skipIf(torch is None, "python3-torch is not installed")
class TestLoraTorch(_util.TestCase):
    def setUp(self) -> None:
        super().setUp()
        self.d = _util.scratch_dir(self)
        self.m = la.Model(seed=3, n_layer=L, n_head=H, n_embd=C, vocab_size=V, max_seq_len=64)
        self.addCleanup(self.m.close)
        self.m.save(self.d / "base.safetensors")
        self.base = {k: v.double() for k, v in read_safetensors(self.d / "base.safetensors").items()}
        # adapters written by PyTorch in PEFT's layout, B non-zero so they matter
        g = torch.Generator().manual_seed(5)
        self.ad = {}
        for l in range(L):
            for s in SITES:
                i, o = SHAPES[s]
                self.ad[f"{PREFIX}h.{l}.{s}.lora_A.weight"] = (torch.rand(R, i, generator=g) * 2 - 1) / math.sqrt(i)
                self.ad[f"{PREFIX}h.{l}.{s}.lora_B.weight"] = torch.randn(o, R, generator=g) * 0.2
        peft = self.d / "peft"
        peft.mkdir()
        write_safetensors(peft / "adapter_model.safetensors", self.ad)
        (peft / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": R, "lora_alpha": ALPHA, "lora_dropout": 0.0,
            "target_modules": ["c_attn", "c_proj", "c_fc"], "fan_in_fan_out": True, "bias": "none",
            "base_model_name_or_path": "tiny", "modules_to_save": None}))
        self.m.lora_load(peft)

    def lib_logprob_sum(self, m: la.Model) -> float:
        out = m.forward(SEQS)
        return sum(sum(row) for row in out.token_logprobs)

    def test_forward_step_and_merge_match_torch(self) -> None:
        m = self.m
        self.assertEqual(m.lora_num_params, sum(t.numel() for t in self.ad.values()))
        ad64 = {k: v.double() for k, v in self.ad.items()}
        ref = float(gpt2_logprobs(self.base, ad64, ALPHA / R, SEQS))
        got = self.lib_logprob_sum(m)
        self.assertAlmostEqual(got, ref, delta=2e-4 * abs(ref))
        # one AdamW step on loss = -mean token log-prob, adapters only, no clipping
        n_tok = sum(len(s) - 1 for s in SEQS)
        lr = 1e-3
        opt = la.Optimizer(m, learning_rate=lr, max_grad_norm=0.0, weight_decay=0.01)
        self.addCleanup(opt.close)
        out = m.forward(SEQS)
        m.backward([[-1.0 / n_tok] * (len(s) - 1) for s in SEQS])
        opt.step()
        m.lora_save(self.d / "after")
        after = read_safetensors(self.d / "after" / "adapter_model.safetensors")
        params = {k: v.clone().double().requires_grad_(True) for k, v in self.ad.items()}
        topt = torch.optim.AdamW(list(params.values()), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        loss = -gpt2_logprobs(self.base, params, ALPHA / R, SEQS) / n_tok
        loss.backward()
        self.assertAlmostEqual(-sum(sum(r) for r in out.token_logprobs) / n_tok, float(loss), delta=1e-5)
        grads = {k: p.grad.clone() for k, p in params.items()}
        topt.step()
        worst, compared = 0.0, 0
        for k, p in params.items():
            # Adam's first step is lr * g / (|g| + eps): compare where |g| is not at rounding level
            sel = grads[k].abs() > 1e-5
            d = (after[k].double() - p.detach())[sel].abs()
            compared += int(sel.sum())
            if d.numel():
                worst = max(worst, float(d.max()))
        print(f"\nlora vs torch: log-prob sum {got:.6f} vs {ref:.6f}; AdamW step on {compared} adapter entries: "
              f"worst |difference| {worst:.2e} (lr {lr})")
        self.assertGreater(compared, 0.9 * sum(t.numel() for t in self.ad.values()))
        self.assertLess(worst, 2e-2 * lr)
        # the base did not move
        m.lora_enable(False)
        m.save(self.d / "base_after.safetensors")
        m.lora_enable(True)
        back = read_safetensors(self.d / "base_after.safetensors")
        for k, v in self.base.items():
            self.assertTrue(torch.equal(back[k].double(), v), k)
        # merge: the forward of W + scale (B A)^T
        got = self.lib_logprob_sum(m)
        m.lora_merge()
        self.assertEqual(m.lora_num_params, 0)
        merged = dict(self.base)
        for l in range(L):
            for s in SITES:
                a = after[f"{PREFIX}h.{l}.{s}.lora_A.weight"].double()
                b = after[f"{PREFIX}h.{l}.{s}.lora_B.weight"].double()
                merged[f"h.{l}.{s}.weight"] = merged[f"h.{l}.{s}.weight"] + (ALPHA / R) * (b @ a).T
        ref_m = float(gpt2_logprobs(merged, {}, 0.0, SEQS))
        self.assertAlmostEqual(self.lib_logprob_sum(m), ref_m, delta=2e-4 * abs(ref_m))
        self.assertAlmostEqual(got, ref_m, delta=2e-4 * abs(ref_m))

    def test_peft_files_round_trip(self) -> None:
        self.m.lora_save(self.d / "out")
        back = read_safetensors(self.d / "out" / "adapter_model.safetensors")
        self.assertEqual(set(back), set(self.ad))
        for k, v in self.ad.items():
            self.assertTrue(torch.equal(back[k], v), k)
        cfg = json.loads((self.d / "out" / "adapter_config.json").read_text())
        self.assertEqual((cfg["peft_type"], cfg["r"], cfg["lora_alpha"], cfg["fan_in_fan_out"], cfg["bias"]),
                         ("LORA", R, ALPHA, True, "none"))
        self.assertEqual(sorted(cfg["target_modules"]), ["c_attn", "c_fc", "c_proj"])
        # a base clone without adapters (shares nothing trainable) loads them back
        with self.m.clone(adapters=False) as c:
            self.assertEqual(c.lora_num_params, 0)
            c.lora_load(self.d / "out")
            self.assertEqual(c.forward(SEQS).token_logprobs, self.m.forward(SEQS).token_logprobs)
        # the "adapters off" reference is the base
        with self.m.clone(frozen=True, adapters=False) as ref:
            self.m.lora_enable(False)
            self.assertEqual(ref.forward(SEQS).token_logprobs, self.m.forward(SEQS).token_logprobs)
            self.m.lora_enable(True)
        with self.assertRaises(la.AlignError):
            self.m.lora_attach(r=2)
        with la.Model(seed=1, n_layer=1, n_head=2, n_embd=16, vocab_size=V, max_seq_len=16) as other:
            with self.assertRaises(la.AlignError):
                other.lora_attach(targets="q,v")


# ---- Llama (GQA 4 / 2 heads, untied head): q_proj, v_proj, gate_proj ---------------
LL = dict(arch="llama", n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=48, vocab_size=V,
          max_seq_len=64, rope_theta=500.0, norm_eps=1e-5)
LPREFIX = "base_model.model.model.layers."
LSITES = {"self_attn.q_proj": (32, 32), "self_attn.v_proj": (32, 16), "mlp.gate_proj": (32, 48)}


def llama_logprobs(w: Dict[str, "torch.Tensor"], ad: Dict[str, "torch.Tensor"], scale: float,
                   seqs: List[List[int]]) -> "torch.Tensor":
    """Sum of the token log-probs, float64: Hugging Face's Llama (RMSNorm,
    rotate_half rotary, repeat_kv, SwiGLU, nn.Linear [out][in]) with PEFT's
    LoRA y = x W^T + scale (x A^T) B^T on the linears ad names."""
    nh, kvh, c, hs = LL["n_head"], LL["n_kv_head"], LL["n_embd"], LL["n_embd"] // LL["n_head"]
    eps, theta = LL["norm_eps"], LL["rope_theta"]

    def rms(x, g):
        return g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rot(x):
        return torch.cat((-x[..., hs // 2:], x[..., : hs // 2]), dim=-1)

    total = torch.zeros((), dtype=torch.float64)
    for ids in seqs:
        n = len(ids)
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        inv = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
        fr = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cat((fr, fr), -1).cos(), torch.cat((fr, fr), -1).sin()
        mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
        for l in range(LL["n_layer"]):
            p = f"model.layers.{l}."

            def lin(site: str, h: "torch.Tensor") -> "torch.Tensor":
                y = h @ w[p + site + ".weight"].T
                a = ad.get(f"{LPREFIX}{l}.{site}.lora_A.weight")
                if a is not None:
                    y = y + scale * (h @ a.T) @ ad[f"{LPREFIX}{l}.{site}.lora_B.weight"].T
                return y

            h = rms(x, w[p + "input_layernorm.weight"])
            q = lin("self_attn.q_proj", h).view(n, nh, hs).transpose(0, 1)
            k = lin("self_attn.k_proj", h).view(n, kvh, hs).transpose(0, 1)
            v = lin("self_attn.v_proj", h).view(n, kvh, hs).transpose(0, 1)
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
            k, v = k.repeat_interleave(nh // kvh, 0), v.repeat_interleave(nh // kvh, 0)
            att = ((q @ k.transpose(-1, -2)) / math.sqrt(hs)).masked_fill(~mask, float("-inf")).softmax(-1)
            x = x + lin("self_attn.o_proj", (att @ v).transpose(0, 1).reshape(n, c))
            h = rms(x, w[p + "post_attention_layernorm.weight"])
            f = torch.nn.functional.silu(lin("mlp.gate_proj", h)) * lin("mlp.up_proj", h)
            x = x + lin("mlp.down_proj", f)
        x = rms(x, w["model.norm.weight"])
        lp = (x @ w["lm_head.weight"].T).log_softmax(-1)
        total = total + lp[torch.arange(n - 1), torch.tensor(ids[1:])].sum()
    return total


@unittest.skipIf(torch is None, "python3-torch is not installed")
class TestLoraLlamaTorch(_util.TestCase):
    def test_llama_forward_step_and_merge_match_torch(self) -> None:
        d = _util.scratch_dir(self)
        m = la.Model(seed=4, untied_head=True, **LL)
        self.addCleanup(m.close)
        m.save(d / "base.safetensors")
        base = {k: v.double() for k, v in read_safetensors(d / "base.safetensors").items()}
        g = torch.Generator().manual_seed(6)
        ad = {}
        for l in range(LL["n_layer"]):
            for s, (i, o) in LSITES.items():
                ad[f"{LPREFIX}{l}.{s}.lora_A.weight"] = (torch.rand(R, i, generator=g) * 2 - 1) / math.sqrt(i)
                ad[f"{LPREFIX}{l}.{s}.lora_B.weight"] = torch.randn(o, R, generator=g) * 0.2
        peft = d / "peft"
        peft.mkdir()
        write_safetensors(peft / "adapter_model.safetensors", ad)
        (peft / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": R, "lora_alpha": ALPHA, "lora_dropout": 0.0,
            "target_modules": ["q_proj", "v_proj", "gate_proj"], "fan_in_fan_out": False, "bias": "none",
            "base_model_name_or_path": "tiny-llama", "modules_to_save": None}))
        m.lora_load(peft)
        self.assertEqual(m.lora_num_params, sum(t.numel() for t in ad.values()))
        ref = float(llama_logprobs(base, {k: v.double() for k, v in ad.items()}, ALPHA / R, SEQS))
        got = sum(sum(r) for r in m.forward(SEQS).token_logprobs)
        self.assertAlmostEqual(got, ref, delta=2e-4 * abs(ref))
        # one AdamW step of the adapters on -mean token log-prob
        n_tok = sum(len(s) - 1 for s in SEQS)
        lr = 1e-3
        opt = la.Optimizer(m, learning_rate=lr, max_grad_norm=0.0, weight_decay=0.01)
        self.addCleanup(opt.close)
        m.forward(SEQS)
        m.backward([[-1.0 / n_tok] * (len(s) - 1) for s in SEQS])
        opt.step()
        m.lora_save(d / "after")
        after = read_safetensors(d / "after" / "adapter_model.safetensors")
        self.assertEqual(set(after), set(ad))
        cfg = json.loads((d / "after" / "adapter_config.json").read_text())
        self.assertEqual((cfg["fan_in_fan_out"], sorted(cfg["target_modules"])),
                         (False, ["gate_proj", "q_proj", "v_proj"]))
        params = {k: v.clone().double().requires_grad_(True) for k, v in ad.items()}
        topt = torch.optim.AdamW(list(params.values()), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        loss = -llama_logprobs(base, params, ALPHA / R, SEQS) / n_tok
        loss.backward()
        grads = {k: p.grad.clone() for k, p in params.items()}
        topt.step()
        worst, compared = 0.0, 0
        for k, p in params.items():
            sel = grads[k].abs() > 1e-5  # Adam's first step is lr * sign(g) where |g| >> eps
            dd = (after[k].double() - p.detach())[sel].abs()
            compared += int(sel.sum())
            if dd.numel():
                worst = max(worst, float(dd.max()))
        print(f"\nllama lora vs torch: log-prob sum {got:.6f} vs {ref:.6f}; AdamW step on {compared} adapter "
              f"entries: worst |difference| {worst:.2e} (lr {lr})")
        self.assertGreater(compared, 0.9 * sum(t.numel() for t in ad.values()))
        self.assertLess(worst, 2e-2 * lr)
        # merge: the forward of W + scale B A ([out][in])
        got = sum(sum(r) for r in m.forward(SEQS).token_logprobs)
        m.lora_merge()
        merged = dict(base)
        for l in range(LL["n_layer"]):
            for s in LSITES:
                a = after[f"{LPREFIX}{l}.{s}.lora_A.weight"].double()
                b = after[f"{LPREFIX}{l}.{s}.lora_B.weight"].double()
                merged[f"model.layers.{l}.{s}.weight"] = merged[f"model.layers.{l}.{s}.weight"] + (ALPHA / R) * (b @ a)
        ref_m = float(llama_logprobs(merged, {}, 0.0, SEQS))
        self.assertAlmostEqual(sum(sum(r) for r in m.forward(SEQS).token_logprobs), ref_m, delta=2e-4 * abs(ref_m))
        self.assertAlmostEqual(got, ref_m, delta=2e-4 * abs(ref_m))


if __name__ == "__main__":
    unittest.main()
