"""Exceptions raised inside Python callbacks surface as themselves, with
their traceback, after the C call returns; C sees ALIGN_ECALLBACK and the
step is discarded."""
from __future__ import annotations

import traceback

import libalign as la
from libalign import _callbacks, _raw

from . import _util


class Boom(Exception):
    pass


class TestOnStep(_util.TestCase):
    def setUp(self) -> None:
        super().setUp()
        self.tok = la.Tokenizer.bytes()
        self.model = _util.tiny_model()
        self.data = la.Dataset(_util.arithmetic_records(3))
        self.opt = la.Optimizer(self.model, learning_rate=1e-2)
        for o in (self.tok, self.model, self.data, self.opt):
            self.addCleanup(o.close)
        self.probe = [[1, 2, 3, 4, 5, 6]]

    def test_exception_surfaces_and_update_is_discarded(self) -> None:
        raised = []

        def on_step(stats: la.StepStats) -> None:
            self.assertGreater(stats.loss, 0)
            if stats.step == 2 and not raised:
                exc = Boom("from on_step")
                raised.append(exc)
                raise exc

        with la.Trainer.sft(self.model, self.tok, self.data, self.opt, micro_batch=3,
                            max_steps=4, on_step=on_step) as tr:
            tr.step()
            before = self.model.forward(self.probe).token_logprobs
            try:
                tr.step()
            except Boom as e:      # (assertRaises would strip the traceback)
                caught = e
            else:
                self.fail("the callback's exception did not surface")
            self.assertIs(caught, raised[0])
            # the traceback reaches into the callback
            frames = [f.name for f in traceback.extract_tb(caught.__traceback__)]
            self.assertIn("on_step", frames)
            # chained to the C error it caused
            self.assertIsInstance(caught.__cause__, la.AlignCallbackError)
            self.assertEqual(caught.__cause__.code, _raw.ALIGN_ECALLBACK)
            # model and optimizer as before the failed step
            self.assertEqual(self.model.forward(self.probe).token_logprobs, before)
            self.assertEqual(self.opt.steps_done, 1)
            # training goes on
            self.assertEqual(tr.step().step, 2)

    def test_negative_status_is_a_callback_error(self) -> None:
        with la.Trainer.sft(self.model, self.tok, self.data, self.opt, micro_batch=3,
                            max_steps=4, on_step=lambda s: -3) as tr:
            with self.assertRaises(la.AlignCallbackError) as cm:
                tr.step()
            self.assertIn("-3", cm.exception.message)
            self.assertEqual(self.opt.steps_done, 0)

    def test_bad_return_type_is_a_type_error(self) -> None:
        with la.Trainer.sft(self.model, self.tok, self.data, self.opt, micro_batch=3,
                            max_steps=4, on_step=lambda s: "yes") as tr:
            with self.assertRaises(TypeError):
                tr.step()

    def test_keyboard_interrupt_propagates(self) -> None:
        def on_step(stats: la.StepStats) -> None:
            raise KeyboardInterrupt

        with la.Trainer.sft(self.model, self.tok, self.data, self.opt, micro_batch=3,
                            max_steps=4, on_step=on_step) as tr:
            with self.assertRaises(KeyboardInterrupt):
                tr.step()
            self.assertEqual(self.opt.steps_done, 0)

    def test_stop_request_from_the_callback(self) -> None:
        holder = {}

        def on_step(stats: la.StepStats) -> None:
            if stats.step == 1:
                holder["tr"].request_stop()

        with la.Trainer.sft(self.model, self.tok, self.data, self.opt, micro_batch=3,
                            max_steps=4, on_step=on_step) as tr:
            holder["tr"] = tr
            tr.step()
            with self.assertRaises(la.AlignCanceled):
                tr.step()
        holder.clear()

    def test_callback_sees_every_step(self) -> None:
        seen = []
        with la.Trainer.sft(self.model, self.tok, self.data, self.opt, micro_batch=3,
                            max_steps=3, on_step=seen.append) as tr:
            out = list(tr)
        self.assertEqual([s.step for s in seen], [1, 2, 3])
        self.assertEqual([s.loss for s in seen], [s.loss for s in out])


class TestPromptSource(_util.TestCase):
    """align_dataset_set_source: in v0 no public call pulls from the source
    (only the RL trainers will), so these tests call the registered C
    function pointer through the C ABI, as the library does."""

    def test_exception_in_source_surfaces(self) -> None:
        def source() -> str:
            raise Boom("no prompts today")

        with la.Dataset() as d:
            d.set_source(source)
            cb = d._state.keep["source"]
            rc = cb.pointer(None, None)          # C calling the source
            self.assertEqual(rc, _raw.ALIGN_ECALLBACK)
            self.assertEqual(_callbacks.pending_count(), 1)
            # re-raised after the (next) libalign call returns on this thread
            try:
                len(d)
            except Boom as e:
                frames = [f.name for f in traceback.extract_tb(e.__traceback__)]
            else:
                self.fail("the source's exception did not surface")
            self.assertIn("source", frames)

    def test_source_results(self) -> None:
        with la.Dataset() as d:
            d.set_source(lambda: None)
            self.assertEqual(d._state.keep["source"].pointer(None, None), _raw.ALIGN_DONE)
            d.set_source([])                     # an exhausted iterable
            self.assertEqual(d._state.keep["source"].pointer(None, None), _raw.ALIGN_DONE)
            d.set_source(iter(["p"]))
            # a real sink exists only inside the library: adding to NULL fails,
            # and that failure surfaces as the AlignError raised in the callback
            self.assertEqual(d._state.keep["source"].pointer(None, None),
                             _raw.ALIGN_ECALLBACK)
            with self.assertRaises(la.AlignError) as cm:
                d.skipped
            self.assertEqual(cm.exception.function, "align_text_sink_add")
            d.set_source(None)
            self.assertNotIn("source", d._state.keep)
            with self.assertRaises(TypeError):
                d.set_source(42)

    def test_pull_through_the_library(self) -> None:
        with la.Dataset() as d:
            self.assertFalse(d.pull())            # no source: nothing to pull
            d.set_source(iter(["first prompt", "second prompt"]))
            self.assertTrue(d.pull(2))
            self.assertEqual(len(d), 2)
            self.assertEqual(d[1]["prompt"], "second prompt")
            self.assertFalse(d.pull())            # exhausted: ALIGN_DONE
            self.assertEqual(len(d), 2)

            def source() -> str:
                raise Boom("pulled and failed")
            d.set_source(source)
            with self.assertRaises(Boom):
                d.pull()
            self.assertEqual(len(d), 2)           # nothing already loaded is lost
            with self.assertRaises(ValueError):
                d.pull(0)

    def test_source_is_kept_alive_with_the_handle(self) -> None:
        import gc
        import weakref

        class Source:
            def __call__(self) -> None:
                return None

        src = Source()
        ref = weakref.ref(src)
        d = la.Dataset()
        d.set_source(src)
        del src
        gc.collect()
        self.assertIsNotNone(ref())     # C may still call it
        d.close()
        gc.collect()
        self.assertIsNone(ref())


class TestLogHandler(_util.TestCase):
    def test_exception_in_log_handler_surfaces(self) -> None:
        tmp = _util.scratch_dir(self)
        path = tmp / "bad.jsonl"
        path.write_text('{"prompt": "a", "completion": "b"}\nnot json\n')

        def handler(level: la.LogLevel, message: str) -> None:
            raise Boom(message)

        la.set_log_handler(handler)
        try:
            with la.Dataset() as d:
                with self.assertRaises(Boom) as cm:
                    d.load_jsonl(path, lenient=True)
                self.assertIn(str(path), str(cm.exception))
                self.assertEqual(len(d), 1)      # the call itself succeeded
        finally:
            la.set_log_handler(None)


class TestThreads(_util.TestCase):
    def test_step_in_an_executor(self) -> None:
        import concurrent.futures

        tok = la.Tokenizer.bytes()
        model = _util.tiny_model()
        data = la.Dataset(_util.arithmetic_records(3))
        opt = la.Optimizer(model)
        for o in (tok, model, data, opt):
            self.addCleanup(o.close)

        def on_step(stats: la.StepStats) -> None:
            if stats.step == 2:
                raise Boom("in a worker thread")

        with la.Trainer.sft(model, tok, data, opt, micro_batch=3, max_steps=3,
                            on_step=on_step) as tr, \
                concurrent.futures.ThreadPoolExecutor(1) as pool:
            self.assertEqual(pool.submit(tr.step).result().step, 1)
            with self.assertRaises(Boom):
                pool.submit(tr.step).result()
            self.assertEqual(opt.steps_done, 1)
