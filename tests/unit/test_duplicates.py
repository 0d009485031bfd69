"""Copies of one event in flight: the second waits for the first's outcome."""

from types import SimpleNamespace

from eda.runtime.duplicates import Duplicates


def copy(event_id, n):
    return SimpleNamespace(event=SimpleNamespace(id=event_id), n=n)


def test_the_first_copy_goes_on_and_the_others_wait():
    seen = Duplicates()
    first, second, third = copy("e-1", 1), copy("e-1", 2), copy("e-1", 3)
    assert seen.arrived(first) is False
    assert seen.arrived(second) is True and seen.arrived(third) is True
    assert seen.arrived(copy("e-2", 1)) is False  # another event is not held up


def test_once_the_first_is_processed_every_waiting_copy_is_acked_without_handling():
    seen = Duplicates()
    first, second, third = copy("e-1", 1), copy("e-1", 2), copy("e-1", 3)
    for c in (first, second, third):
        seen.arrived(c)
    skipped, successor = seen.resolved(first, processed=True)
    assert [c.n for c in skipped] == [2, 3] and successor is None
    assert "e-1" not in seen


def test_when_the_first_fails_the_next_copy_goes_on_and_the_rest_wait_for_it():
    seen = Duplicates()
    first, second, third = copy("e-1", 1), copy("e-1", 2), copy("e-1", 3)
    for c in (first, second, third):
        seen.arrived(c)
    skipped, successor = seen.resolved(first, processed=False)
    assert skipped == [] and successor is second
    skipped, successor = seen.resolved(second, processed=True)
    assert [c.n for c in skipped] == [3] and successor is None


def test_a_lone_copy_resolves_to_nothing_and_a_new_session_forgets_everything():
    seen = Duplicates()
    only = copy("e-1", 1)
    seen.arrived(only)
    assert seen.resolved(only, processed=False) == ([], None)
    seen.arrived(copy("e-2", 1))
    seen.clear()
    assert "e-2" not in seen
