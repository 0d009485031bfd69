"""The wake-up pipe of a thread waiting in select: one byte per wait however many hand-overs, woken again
after it cleared, and a wake after close is no error (a handler thread finishing after its runner closed)."""

import os
import select

from eda.wakeup import WakeUp


def readable(wakeup: WakeUp) -> bool:
    return bool(select.select([wakeup.read_fd], [], [], 0)[0])


def test_hand_overs_before_the_thread_clears_write_one_byte_and_one_after_wakes_it_again():
    wakeup = WakeUp()
    for _ in range(3):
        wakeup.wake_once()
    assert readable(wakeup) and len(os.read(wakeup.read_fd, 4096)) == 1
    wakeup.clear()
    assert not readable(wakeup)
    wakeup.wake_once()
    assert readable(wakeup)
    wakeup.close()


def test_a_wake_after_close_is_no_error():
    wakeup = WakeUp()
    wakeup.close()
    wakeup.wake()
    wakeup.clear()
