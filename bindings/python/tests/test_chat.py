"""The chat template through the binding: Tokenizer.encode_chat, and a model
trained by SFT on chat records then prompted with ``generate(messages=...)``
sees exactly the token ids SFT trained on, and answers as trained."""
from __future__ import annotations

import math

import libalign as la

from . import _util

SYSTEM = {"role": "system", "content": "One word."}
QA = [("color?", "red"), ("animal?", "cat"), ("number?", "seven"), ("fruit?", "fig")]
# SFT prefixes given as SFT parameters and, for prompting, as a template
PREFIXES = dict(user_prefix="U: ", assistant_prefix="A: ")


def conversation(q: str, a: str) -> list:
    return [SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]


class TestEncodeChat(_util.TestCase):
    def test_default_template(self) -> None:
        with la.Tokenizer.bytes() as tok:
            msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
            ids, mask = tok.encode_chat(msgs, with_mask=True)
            want = list(b"<|user|>\nhi") + [256] + list(b"<|assistant|>\nyo") + [256]
            self.assertEqual(ids, want)
            self.assertEqual(mask, [0] * (len(want) - 3) + [1, 1, 1])
            prompt = tok.encode_chat(msgs[:1], generation_prompt=True)
            self.assertEqual(prompt, want[:-3])
            custom = tok.encode_chat(msgs[:1], generation_prompt=True,
                                     template=la.ChatTemplate(user_prefix="U:", assistant_prefix="A:"))
            self.assertEqual(custom, list(b"U:hi") + [256] + list(b"A:"))
            self.assertEqual(tok.encode_chat(msgs[:1], template={"user_prefix": "U:"}),
                             list(b"U:hi") + [256])
            # a long conversation grows the buffer
            long_msgs = [{"role": "user", "content": "x" * 5000}]
            self.assertEqual(len(tok.encode_chat(long_msgs)), len("<|user|>\n") + 5000 + 1)

    def test_bad_messages(self) -> None:
        with la.Tokenizer.bytes() as tok:
            with self.assertRaises(TypeError):
                tok.encode_chat("hi")
            with self.assertRaises(TypeError):
                tok.encode_chat([{"role": "user"}])
            with self.assertRaises(ValueError):
                tok.encode_chat([{"role": "user", "content": "a"}], template={"bad": 1})
            with self.assertRaises(la.AlignInvalidArgument) as cm:
                tok.encode_chat([{"role": "", "content": "a"}])
            self.assertIn("empty role", cm.exception.message)


class TestSFTThenGenerateChat(_util.TestCase):
    def test_prompt_ids_are_the_trained_ids(self) -> None:
        tok = la.Tokenizer.bytes()
        model = la.Model(n_layer=2, n_head=2, n_embd=48, vocab_size=257, max_seq_len=64, seed=3)
        opt = la.Optimizer(model, learning_rate=1e-2, warmup_steps=5)
        data = la.Dataset([{"messages": conversation(q, a)} for q, a in QA])
        self.addCleanup(lambda: [o.close() for o in (opt, data, model, tok)])
        template = la.ChatTemplate(**PREFIXES)
        with la.Trainer.sft(model, tok, data, opt, micro_batch=len(QA), max_steps=60,
                            max_seq_len=64, **PREFIXES) as tr:
            stats = list(tr)
            # the loss SFT computes is the loss over the template's ids and mask:
            # so the ids SFT trains on are encode_chat's
            ev = tr.evaluate(data)
        self.assertLess(stats[-1].loss, 0.05 * stats[0].loss)
        total, count = 0.0, 0
        for q, a in QA:
            ids, mask = tok.encode_chat(conversation(q, a), template=template, with_mask=True)
            lp = model.forward([ids]).token_logprobs[0]
            for t in range(len(ids) - 1):
                if mask[t + 1]:
                    total -= lp[t]
                    count += 1
        self.assertEqual(count, ev.tokens)
        self.assertAlmostEqual(total / count, ev.loss, delta=1e-5 + 1e-4 * abs(ev.loss))

        # generation from messages: the prompt is the trained prefix, the reply
        # is the trained completion, ended by the end-of-turn token
        prompts = [conversation(q, a)[:2] for q, a in QA]
        gens = model.generate(tok, messages=prompts, template=template, temperature=0,
                              max_new_tokens=12)
        self.assertEqual(len(gens), len(QA))
        for (q, a), msgs, g in zip(QA, prompts, gens):
            ids, mask = tok.encode_chat(conversation(q, a), template=template, with_mask=True)
            prompt = tok.encode_chat(msgs, template=template, generation_prompt=True)
            n = len(prompt)
            self.assertEqual(prompt, ids[:n])
            self.assertEqual(mask[:n], [0] * n)
            self.assertEqual(g.text, a)
            self.assertEqual(g.finish_reason, la.FinishReason.EOT)
            self.assertEqual(g.tokens, ids[n:])
            self.assertEqual(g.prompt, tok.decode(prompt))
            # log-probs are the forward pass's over the trained ids
            lp = model.forward([ids]).token_logprobs[0]
            for j, x in enumerate(g.logprobs):
                self.assertTrue(math.isclose(x, lp[n - 1 + j], abs_tol=1e-4))
        # the same prompts as token ids (same batch) give bitwise the same results
        same = model.generate(tok, prompt_tokens=[tok.encode_chat(msgs, template=template,
                                                                  generation_prompt=True)
                                                  for msgs in prompts],
                              temperature=0, max_new_tokens=12)
        self.assertEqual([(x.tokens, x.logprobs) for x in same], [(g.tokens, g.logprobs) for g in gens])
        # one conversation -> one Generation
        one = model.generate(tok, messages=prompts[0], template=PREFIXES, temperature=0,
                             max_new_tokens=12)
        self.assertIsInstance(one, la.Generation)
        self.assertEqual(one.text, QA[0][1])


class TestGenerateArguments(_util.TestCase):
    def test_prompt_kinds(self) -> None:
        with la.Tokenizer.bytes() as tok, _util.tiny_model() as m:
            kw = dict(max_new_tokens=5, seed=4, ignore_eot=True)
            a = m.generate(tok, ["ab<|endoftext|>c", "x"], special=True, **kw)
            b = m.generate(tok, prompt_tokens=[[97, 98, 256, 99], [120]], **kw)
            self.assertEqual([g.tokens for g in a], [g.tokens for g in b])
            self.assertEqual([g.logprobs for g in a], [g.logprobs for g in b])
            c = m.generate(tok, "ab<|endoftext|>c", **kw)
            d = m.generate(tok, prompt_tokens=list(b"ab<|endoftext|>c"), **kw)
            self.assertEqual((c.tokens, c.logprobs), (d.tokens, d.logprobs))
            self.assertEqual(m.generate(tok, messages=[], **kw), [])
            self.assertEqual(m.generate(tok, prompt_tokens=[], **kw), [])
            with self.assertRaises(TypeError):
                m.generate(tok)
            with self.assertRaises(TypeError):
                m.generate(tok, "x", messages=[{"role": "user", "content": "x"}])
            with self.assertRaises(TypeError):
                m.generate(tok, "x", template={"user_prefix": "U"})
            with self.assertRaises(la.AlignInvalidArgument) as cm:
                m.generate(tok, prompt_tokens=[1, 999], **kw)
            self.assertIn("outside the tokenizer's vocabulary", cm.exception.message)
            with self.assertRaises(TypeError):
                m.generate(tok, messages=[[{"role": "user"}]], **kw)
