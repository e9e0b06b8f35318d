"""A GPT2ForSequenceClassification reward model written by PyTorch code the
way transformers lays it out (body under "transformer.", a top-level
score.weight [1, n_embd] without bias, HF's causal-mask buffers, a
config.json) loads into libalign and scores what a straightforward GPT-2
forward in PyTorch computes, within 1e-5; and what libalign saves in that
layout reads back in PyTorch to the same weights."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Dict

import libalign as la

from . import _util

try:
    import torch
except ImportError:  # tools/deps.sh installs python3-torch
    torch = None

L, H, C, V, T = 2, 2, 32, 257, 64


def write_safetensors(path: Path, tensors: Dict[str, "torch.Tensor"]) -> None:
    """The safetensors format by hand: 8-byte little-endian header length,
    a JSON header, the raw little-endian data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        dtype = {torch.float32: "F32", torch.bool: "BOOL", torch.uint8: "U8"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
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
        assert e["dtype"] == "F32"
        out[name] = torch.frombuffer(bytearray(body[a:b]), dtype=torch.float32).reshape(e["shape"])
    return out


def hf_state_dict(seed: int) -> Dict[str, "torch.Tensor"]:
    """Random weights with transformers' GPT2ForSequenceClassification names
    and shapes (Conv1D weights are [in, out])."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, std: float = 0.2) -> "torch.Tensor":
        return torch.randn(*shape, generator=g) * std

    sd = {"transformer.wte.weight": rnd(V, C), "transformer.wpe.weight": rnd(T, C)}
    for l in range(L):
        p = f"transformer.h.{l}."
        sd.update({
            p + "ln_1.weight": 1 + rnd(C, std=0.1), p + "ln_1.bias": rnd(C, std=0.1),
            p + "attn.bias": torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T),
            p + "attn.c_attn.weight": rnd(C, 3 * C), p + "attn.c_attn.bias": rnd(3 * C, std=0.1),
            p + "attn.c_proj.weight": rnd(C, C), p + "attn.c_proj.bias": rnd(C, std=0.1),
            p + "ln_2.weight": 1 + rnd(C, std=0.1), p + "ln_2.bias": rnd(C, std=0.1),
            p + "mlp.c_fc.weight": rnd(C, 4 * C), p + "mlp.c_fc.bias": rnd(4 * C, std=0.1),
            p + "mlp.c_proj.weight": rnd(4 * C, C), p + "mlp.c_proj.bias": rnd(C, std=0.1),
        })
    sd["transformer.ln_f.weight"] = 1 + rnd(C, std=0.1)
    sd["transformer.ln_f.bias"] = rnd(C, std=0.1)
    sd["score.weight"] = rnd(1, C)
    return sd


def reference_scores(sd: Dict[str, "torch.Tensor"], ids: "list[int]") -> "torch.Tensor":
    """GPT-2 forward in float64 (pre-LN blocks, causal attention, tanh GELU,
    tied LM head unused) and the score head at every position."""
    w = {k: v.double() for k, v in sd.items() if v.dtype == torch.float32}
    n = len(ids)
    x = w["transformer.wte.weight"][torch.tensor(ids)] + w["transformer.wpe.weight"][:n]
    ln = torch.nn.functional.layer_norm
    hs = C // H
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
    for l in range(L):
        p = f"transformer.h.{l}."
        h = ln(x, (C,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
        q, k, v = (h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]).split(C, dim=-1)
        q, k, v = (t.view(n, H, hs).transpose(0, 1) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(0, 1).reshape(n, C)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = ln(x, (C,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
        f = torch.nn.functional.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"],
                                     approximate="tanh")
        x = x + f @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = ln(x, (C,), w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], 1e-5)
    return x @ w["score.weight"][0]


CONFIG = {
    "architectures": ["GPT2ForSequenceClassification"], "model_type": "gpt2",
    "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "n_layer": L, "n_head": H,
    "n_embd": C, "n_positions": T, "n_ctx": T, "vocab_size": V, "n_inner": None,
    "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}, "scale_attn_weights": True,
    "pad_token_id": 256, "torch_dtype": "float32",
}

PROMPTS = ["What is 2+2?", "Name a colour.", "Say something longer than the rest, please."]
RESPONSES = ["4", "Blue, or maybe green.", "ok"]


class TestHuggingFaceTorch(_util.TestCase):
    def setUp(self) -> None:
        super().setUp()
        if torch is None:
            self.fail("python3-torch is required (tools/deps.sh installs it)")
        self.tok = la.Tokenizer.bytes()
        self.addCleanup(self.tok.close)

    def test_hf_reward_model_scores_like_pytorch(self) -> None:
        d = _util.scratch_dir(self)
        sd = hf_state_dict(11)
        write_safetensors(d / "model.safetensors", sd)
        (d / "config.json").write_text(json.dumps(CONFIG))
        with la.Model.load(d) as m, la.RewardModel.from_model(m, self.tok, batch_size=2) as rm:
            self.assertEqual(m.config.n_head, H)
            scores = rm.score(PROMPTS, RESPONSES)
            worst = 0.0
            for p, r, s in zip(PROMPTS, RESPONSES, scores):
                ids = list((p + r).encode()) + [256]  # a demonstration: prompt, response, <eot>
                ref = reference_scores(sd, ids)
                worst = max(worst, abs(float(ref[-1]) - s))
                # every position of the scalar head, not only the last
                out = m.forward([ids], scalar=True, token_logprobs=False)
                for a, b in zip(out.scalar[0], ref.tolist()):
                    self.assertAlmostEqual(a, b, delta=1e-5)
            self.assertLess(worst, 1e-5)
            # the layout libalign writes reads back in PyTorch to the same tensors
            m.save(str(d / "out") + "/", hf_sequence_classification=True)  # "/": a new folder
        back = read_safetensors(d / "out" / "model.safetensors")
        self.assertEqual(set(back), {k for k, v in sd.items() if v.dtype == torch.float32})
        for k, v in back.items():
            self.assertTrue(torch.equal(v, sd[k]), k)
        cfg = json.loads((d / "out" / "config.json").read_text())
        self.assertEqual(cfg["architectures"], ["GPT2ForSequenceClassification"])
        self.assertEqual((cfg["n_head"], cfg["n_layer"], cfg["n_embd"]), (H, L, C))

    def test_file_without_configuration_is_refused(self) -> None:
        d = _util.scratch_dir(self)
        write_safetensors(d / "model.safetensors", hf_state_dict(1))
        with self.assertRaises(la.AlignFormatError) as cm:
            la.Model.load(d / "model.safetensors")
        self.assertIn("attention heads", str(cm.exception))
