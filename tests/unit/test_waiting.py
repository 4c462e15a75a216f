"""The toolkit's one wait: poll until a condition holds, with a message that says what it saw."""

import itertools

import pytest

from alert_history_cache.waiting import wait_until


def test_returns_the_first_truthy_value():
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 3 and "done", timeout=5, what="three calls", interval=0.001) == "done"


def test_times_out_naming_what_and_the_last_value():
    with pytest.raises(TimeoutError, match=r"waiting for the answer \(last: 0\)"):
        wait_until(lambda: 0, timeout=0.05, what="the answer", interval=0.01)


def test_ignored_errors_count_as_not_yet_and_others_propagate():
    calls = itertools.count()

    def flaky():
        if next(calls) < 2:
            raise ConnectionError("refused")
        return True

    assert wait_until(flaky, timeout=5, what="a server", interval=0.001, ignore=(ConnectionError,))
    with pytest.raises(TimeoutError, match="refused"):
        wait_until(lambda: (_ for _ in ()).throw(ConnectionError("refused")), timeout=0.05, what="x",
                   interval=0.01, ignore=(ConnectionError,))
    with pytest.raises(KeyError):
        wait_until(lambda: {}["missing"], timeout=1, what="x")
