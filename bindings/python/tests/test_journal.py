"""The feedback journal from Python: requests, late answers of every kind
(from several threads), reopening, export to a Dataset, clear errors."""
from __future__ import annotations

import threading

import libalign as la

from . import _util


class TestJournal(_util.TestCase):
    def test_submit_answer_reopen_export(self) -> None:
        path = _util.scratch_dir(self) / "feedback.jsonl"
        with la.Journal(path) as j:
            a = j.submit("Which is best?", ["x", "y", "z"])
            b = j.submit("Good?", ["fine", "rude"], "label")
            c = j.submit("Rate", ["r1"], la.FeedbackKind.SCORE, deadline=0)
            d = j.submit("Never", ["p", "q"])
            self.assertEqual([a, b, c, d], [1, 2, 3, 4])
            j.answer_score(c, 0.5, annotator="bot", source="program")
            j.answer_rank(a, [1, 0, 1], annotator="ann-1", timestamp=1700000000)
            j.cancel(d)
            self.assertEqual(j.pending(), [b])
            self.assertEqual(j.count(la.RequestStatus.ANSWERED), 2)
        with la.Journal(path) as j:
            self.assertEqual(j.torn_bytes, 0)
            r = j.request(a)
            self.assertEqual((r.status, r.prompt, r.responses), (la.RequestStatus.ANSWERED,
                                                                  "Which is best?", ("x", "y", "z")))
            self.assertEqual((r.annotator, r.answered_at, r.source), ("ann-1", 1700000000, la.Source.HUMAN))
            self.assertEqual(j.request(d).status, la.RequestStatus.CANCELED)
            j.answer_label(b, [True, False])
            with la.Dataset() as ds:
                self.assertEqual(j.export(ds), 3)
                self.assertEqual(j.export(ds), 0)   # each request once
                self.assertEqual(len(ds), 1 + 2 + 1)
                self.assertEqual([ds.kind(i) for i in range(4)],
                                 [la.RecordKind.RANKING, la.RecordKind.LABEL, la.RecordKind.LABEL,
                                  la.RecordKind.SCORE])   # in id order
                recs = [ds[i] for i in range(len(ds))]
                self.assertEqual(recs[0]["ranking"], [1, 0, 1])
                self.assertEqual(recs[0]["annotator"], "ann-1")
                self.assertEqual(recs[0]["timestamp"], 1700000000)
                self.assertEqual([recs[1]["label"], recs[2]["label"]], [True, False])
                self.assertEqual(recs[1]["source"], "human")
                self.assertEqual((recs[3]["score"], recs[3]["source"]), (0.5, "program"))
            self.assertTrue(j.request(a).exported)

    def test_bad_input(self) -> None:
        path = _util.scratch_dir(self) / "feedback.jsonl"
        with la.Journal(path, sync=False) as j:
            rid = j.submit("p", ["a", "b"])
            with self.assertRaises(la.AlignInvalidArgument) as cm:
                j.answer_rank(99, [0, 1])
            self.assertIn("99", str(cm.exception))
            with self.assertRaises(ValueError):
                j.answer_rank(rid, [0])            # wrong length, checked before C
            with self.assertRaises(la.AlignInvalidArgument) as cm:
                j.answer_rank(rid, [0, 2])         # place out of range, checked by C
            self.assertIn("outside 0..1", str(cm.exception))
            with self.assertRaises(la.AlignMisuseError):
                j.answer_label(rid, [1, 0])        # a ranking request
            j.answer_rank(rid, [0, 0])
            with self.assertRaises(la.AlignMisuseError):
                j.answer_rank(rid, [0, 1])         # twice
            with self.assertRaises(la.AlignInvalidArgument):
                j.submit("p", ["only one"])        # a ranking needs two
            with self.assertRaises(ValueError):
                j.submit("p", ["a", "b"], "vote")
        path.write_text('{"journal":"libalign-feedback-journal","version":1}\n{"op":"nope","time":1}\n')
        with self.assertRaises(la.AlignFormatError) as cm:
            la.Journal(path)
        self.assertIn(":2:", str(cm.exception))

    def test_answers_from_threads(self) -> None:
        path = _util.scratch_dir(self) / "feedback.jsonl"
        with la.Journal(path, sync=False) as j:
            ids = [j.submit(f"p{i}", ["a", "b", "c"]) for i in range(40)]
            errors = []

            def answer(part: list) -> None:
                try:
                    for rid in part:
                        j.answer_rank(rid, [rid % 3, (rid + 1) % 3, (rid + 2) % 3])
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(e)

            threads = [threading.Thread(target=answer, args=(ids[t::4],)) for t in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(j.pending(), [])
            self.assertEqual(j.count(la.RequestStatus.ANSWERED), 40)

