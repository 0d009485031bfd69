"""HandlerThreads: a fixed set of threads; items beyond them wait in the queue and can be taken back unstarted."""

import threading

from eda.runtime.threads import HandlerThreads


def test_items_beyond_the_threads_wait_and_recall_takes_back_exactly_those_not_started():
    # Given two threads, each held inside its first item
    release, inside, ran = threading.Event(), threading.Semaphore(0), []

    def run(item):
        ran.append(item)
        inside.release()
        release.wait(10)

    threads = HandlerThreads(2, "test-threads", run)
    try:
        # When six items are submitted
        for i in range(6):
            threads.submit(i)
        assert inside.acquire(timeout=10) and inside.acquire(timeout=10)
        # Then two run and recall returns the four waiting, in order, which then never run
        recalled = threads.recall()
        assert sorted(ran) == [0, 1]
        assert recalled == [2, 3, 4, 5]
        release.set()
        threads.submit(6)
        assert inside.acquire(timeout=10)
        assert sorted(ran) == [0, 1, 6]
    finally:
        release.set()
        threads.shutdown()


def test_every_item_is_run_or_recalled_never_both_nor_neither():
    done, lock = [], threading.Lock()

    def run(item):
        with lock:
            done.append(item)

    threads = HandlerThreads(4, "test-threads", run)
    recalled = []
    try:
        for i in range(20_000):
            threads.submit(i)
            if i % 1000 == 999:
                recalled += threads.recall()
        for _ in range(1000):  # until every item not recalled has run (or 10s)
            with lock:
                if len(done) + len(recalled) >= 20_000:
                    break
            threading.Event().wait(0.01)
    finally:
        threads.shutdown()
    with lock:
        assert sorted(done + recalled) == list(range(20_000))
