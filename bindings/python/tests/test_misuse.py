"""Misuse raises clear Python errors and never reaches C with a bad handle."""
from __future__ import annotations

import ctypes

import libalign as la

from . import _util


class TestClosedObjects(_util.TestCase):
    def test_every_class_refuses_calls_when_closed(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model()
        data = la.Dataset([{"prompt": "a", "completion": "b"}])
        opt = la.Optimizer(model)
        tr = la.Trainer.sft(model, tok, data, opt, max_steps=1, micro_batch=1)
        for o in (tr, opt, data, model, tok):
            o.close()
            self.assertTrue(o.closed)
            o.close()                                  # idempotent
        calls = [
            lambda: tok.encode("x"), lambda: tok.decode([1]), lambda: tok.vocab_size,
            lambda: tok.eot,
            lambda: model.config, lambda: model.num_params, lambda: model.forward([[1, 2]]),
            lambda: model.save("/tmp/never"), lambda: model.clone(), lambda: model.zero_grad(),
            lambda: model.generate(tok, "x"),
            lambda: len(data), lambda: data[0], lambda: data.add_prompt("p"),
            lambda: data.kind(0), lambda: data.save_jsonl("/tmp/never"),
            lambda: data.set_source(None), lambda: data.skipped,
            lambda: opt.step(), lambda: opt.lr, lambda: opt.steps_done,
            lambda: tr.step(), lambda: list(tr.steps(1)), lambda: tr.request_stop(),
            lambda: tr.save("/tmp/never"), lambda: tr.evaluate(data),
        ]
        for i, call in enumerate(calls):
            with self.subTest(call=i):
                with self.assertRaises(la.ClosedError) as cm:
                    call()
                self.assertIn("closed", str(cm.exception))

    def test_with_block_closes(self) -> None:
        with la.Tokenizer.bytes() as tok:
            pass
        self.assertTrue(tok.closed)
        with self.assertRaises(la.ClosedError):
            tok.encode("x")
        with self.assertRaises(la.ClosedError):
            with tok:
                pass

    def test_closing_a_borrowed_model_is_deferred(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model()
        data = la.Dataset(_util.arithmetic_records(2))
        opt = la.Optimizer(model)
        tr = la.Trainer.sft(model, tok, data, opt, max_steps=3, micro_batch=2)
        for o in (model, data, opt, tok):
            o.close()
        with self.assertRaises(la.ClosedError):
            model.num_params
        # the trainer still owns working borrowed handles
        self.assertEqual(la.live_handles()["model"], 1)
        self.assertEqual(tr.step().step, 1)
        tr.close()
        self.assertNotIn("model", la.live_handles())
        self.assertNotIn("optimizer", la.live_handles())


class TestWrongTypes(_util.TestCase):
    def test_wrong_argument_types(self) -> None:
        with la.Tokenizer.bytes() as tok, _util.tiny_model() as model, \
                la.Dataset([{"prompt": "a", "completion": "b"}]) as data, \
                la.Optimizer(model) as opt:
            with self.assertRaises(TypeError):
                tok.encode(42)
            with self.assertRaises(TypeError):
                tok.decode(["a"])
            with self.assertRaises(TypeError):
                la.Optimizer(tok)
            with self.assertRaises(TypeError):
                la.Optimizer(model, learning_rate="fast")
            with self.assertRaises(TypeError):
                la.Optimizer(model, momentum=0.9)
            with self.assertRaises(TypeError):
                la.Trainer.sft(model, data, tok, opt)
            with self.assertRaises(TypeError):
                la.Trainer.sft(model, tok, data, opt, micro_batch=2.5)
            with self.assertRaises(TypeError):
                la.Trainer.sft(model, tok, data, opt, learning_rat=1.0)
            with self.assertRaises(TypeError):
                la.Trainer.sft(model, tok, data, opt, on_step=3)
            with self.assertRaises(TypeError):
                la.Trainer()
            with self.assertRaises(TypeError):
                model.generate("not a tokenizer", "x")
            with self.assertRaises(TypeError):
                model.forward("abc")
            with self.assertRaises(TypeError):
                model.forward([[1, "x"]])
            with self.assertRaises(TypeError):
                la.Model(n_layer="2")
            with self.assertRaises(TypeError):
                la.Model.load(3.5)
            with self.assertRaises(TypeError):
                data.add({"prompt": 1, "completion": "b"})
            with self.assertRaises(TypeError):
                data.add("prompt")
            with self.assertRaises(TypeError):
                data.add_label("p", "r", "good")
            with self.assertRaises(TypeError):
                data[0.5]
            with self.assertRaises(ValueError):
                data.add({"prompt": "a", "completions": "b"})     # a typo is not a prompt
            with self.assertRaises(ValueError):
                data.add({"messages": [{"role": "user"}]})
            with self.assertRaises(ValueError):
                data.add_ranking("p", ["a", "b"], [0])
            with self.assertRaises(ValueError):
                data.add_score("p", "r", float("nan"))
            with self.assertRaises(ValueError):
                data.add_demo("p", "r", provenance={"source": "martian"})
            with self.assertRaises(IndexError):
                data[5]
            with self.assertRaisesRegex(ValueError, "record 1: "):
                la.Dataset([{"prompt": "a"}, {"bogus": 1}])
            with self.assertRaises(la.AlignError):     # from C, passed through unchanged
                la.Dataset([{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 5]}])
            self.assertEqual(len(data), 1)
            with self.assertRaises(RuntimeError):
                model.backward([[0.0]])                          # no forward yet
            model.forward([[1, 2, 3]])
            with self.assertRaises(ValueError):
                model.backward([[0.0]])                          # wrong length

    def test_library_rejects_invalid_values(self) -> None:
        with self.assertRaises(la.AlignInvalidArgument) as cm:
            la.Model(n_layer=2, n_head=3, n_embd=32, vocab_size=257, max_seq_len=16)
        self.assertTrue(cm.exception.message)
        with la.Dataset() as d:
            with self.assertRaises(la.AlignError):
                d.add_ranking("p", ["a", "b"], [0, 5])          # not a ranking
            with self.assertRaises(la.AlignError):
                d.add_chat([])
            self.assertEqual(len(d), 0)

    def test_raw_layer_type_checks(self) -> None:
        with self.assertRaises(ctypes.ArgumentError):
            la._raw.align_tokenizer_vocab_size("not a handle")
        with self.assertRaises(ctypes.ArgumentError):
            la._raw.align_dataset_add_prompt(None, "str, not bytes", None)


class TestMissingFiles(_util.TestCase):
    def test_missing_files_raise_file_not_found(self) -> None:
        tmp = _util.scratch_dir(self)
        missing = tmp / "nope"
        for call in (lambda: la.Model.load(missing / "m.safetensors"),
                     lambda: la.Tokenizer(missing / "tokenizer.json"),
                     lambda: la.Tokenizer.load_gpt2(missing / "e.json", missing / "v.bpe"),
                     lambda: la.Dataset.from_jsonl(missing / "d.jsonl")):
            with self.subTest():
                with self.assertRaises(FileNotFoundError) as cm:
                    call()
                self.assertIsInstance(cm.exception, la.AlignError)
                self.assertEqual(cm.exception.code, la._raw.ALIGN_ENOENT)
                self.assertIn(str(missing), str(cm.exception))
        with _util.tiny_model() as m, la.Optimizer(m) as opt:
            with self.assertRaises(FileNotFoundError):
                opt.load(missing / "opt.safetensors")
            with self.assertRaises(la.AlignError):
                m.save(missing / "sub" / "m.safetensors")     # no such folder

    def test_garbage_files(self) -> None:
        tmp = _util.scratch_dir(self)
        junk = tmp / "junk.safetensors"
        junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
        with self.assertRaises(la.AlignError) as cm:
            la.Model.load(junk)
        self.assertIn(cm.exception.code, (la._raw.ALIGN_EFORMAT, la._raw.ALIGN_EIO))
        empty = tmp / "empty.jsonl"
        empty.write_text("")
        with la.Dataset() as d:
            try:
                d.load_jsonl(empty)
            except la.AlignError as e:
                self.assertIn(str(empty), str(e))
            self.assertEqual(len(d), 0)
