"""The Llama architecture from Python: creation with its settings, the
configuration reported back, forward and backward, generation, a BF16 save
that loads again. (Fidelity against PyTorch: tests/sh/llama_torch.sh.)"""
from __future__ import annotations

import dataclasses
import math

import libalign as la

from . import _util

LLAMA = dict(arch="llama", n_layer=2, n_head=4, n_kv_head=2, n_embd=32, intermediate_size=48,
             vocab_size=257, max_seq_len=64, rope_theta=500.0, norm_eps=1e-5)


class TestLlama(_util.TestCase):
    def test_create_forward_generate_save_load(self) -> None:
        d = _util.scratch_dir(self)
        tok = la.Tokenizer.bytes()
        self.addCleanup(tok.close)
        with la.Model(seed=3, untied_head=True, **LLAMA) as m:
            c = m.config
            self.assertEqual((c.arch, c.n_kv_head, c.intermediate_size), (1, 2, 48))
            self.assertEqual(c.rope_theta, 500.0)
            self.assertAlmostEqual(c.norm_eps, 1e-5, delta=1e-12)  # a C float
            self.assertTrue(c.untied_head)
            self.assertFalse(c.qkv_bias)
            ids = list(b"hello llama")
            out = m.forward([ids])
            self.assertEqual(len(out.token_logprobs[0]), len(ids) - 1)
            # random init: each next token about as likely as any other
            for lp in out.token_logprobs[0]:
                self.assertLess(abs(lp + math.log(257)), 0.5)
            m.backward([[1.0] * (len(ids) - 1)])
            g = m.generate(tok, "hi", temperature=0, max_new_tokens=5)
            self.assertEqual(len(g.tokens), 5)
            m.save(str(d / "bf16") + "/", bf16=True)
            with la.Model.load(d / "bf16") as back:
                self.assertEqual(back.config, dataclasses.replace(c, seed=1234))  # the seed is not saved
                again = back.forward([ids]).token_logprobs[0]
                for a, b in zip(out.token_logprobs[0], again):
                    self.assertAlmostEqual(a, b, delta=2e-2)  # weights rounded to bf16

    def test_bad_settings_are_refused(self) -> None:
        with self.assertRaises(la.AlignInvalidArgument):
            la.Model(**dict(LLAMA, n_kv_head=3))
        with self.assertRaises(ValueError):
            la.Model(**dict(LLAMA, arch="phi"))
