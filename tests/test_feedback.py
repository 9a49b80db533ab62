"""status.Feedback: the acceptance counts behind santa.status (see tests/lsp/test_acceptance.py
for the same over stdio)."""

from santa_lsp.lsp.status import FEEDBACK_IDS, FEEDBACK_LANGUAGES, Feedback


def test_states_and_late_commands():
    f = Feedback()
    a = f.shown("doc", "python")
    assert f.accepted(a, "word") and f.accepted(a, "line")  # partial counts once per suggestion
    assert f.accepted(a)  # then all of it
    b = f.shown("doc", "python")  # a is not dismissed: it was taken
    f.shown("doc", "python")  # b dismissed
    assert f.report()["python"] == {"shown": 3, "accepted": 1, "partiallyAccepted": 1, "dismissed": 1}
    assert f.accepted(b)  # late: dismissed turns accepted
    assert f.report()["python"]["dismissed"] == 0 and f.report()["python"]["accepted"] == 2
    assert not f.accepted(b, "everything") and not f.accepted("1") and not f.accepted(True)


def test_bounded():
    f = Feedback()
    first = f.shown("d0", "lang0")
    for i in range(1, FEEDBACK_IDS + 10):
        f.shown(f"d{i}", f"lang{i}")
    assert not f.accepted(first)  # forgotten: too old
    report = f.report()
    assert len(report) <= FEEDBACK_LANGUAGES + 2 and report["total"]["shown"] == FEEDBACK_IDS + 10
    assert report["other"]["shown"] == FEEDBACK_IDS + 10 - FEEDBACK_LANGUAGES
