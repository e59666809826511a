"""ShutdownSignals: the first signal asks to leave, a second exits at once, and
a leave that outlives the budget is cut short (manual hard_exit, no process)."""

from __future__ import annotations

import asyncio
import signal

from seedfl.node.signals import SHUTDOWN_BUDGET_S, ShutdownSignals


def test_first_signal_asks_to_leave_second_exits_with_128_plus_signum() -> None:
    async def main() -> tuple[bool, list[int], list[int]]:
        exits: list[int] = []
        sig = ShutdownSignals(asyncio.Event(), hard_exit=exits.append)
        sig.on_signal(signal.SIGTERM)
        after_first = list(exits)
        sig.on_signal(signal.SIGINT)
        return sig.stop.is_set(), after_first, exits

    stopped, after_first, exits = asyncio.run(main())
    assert stopped and after_first == [] and exits == [128 + signal.SIGINT]


def test_a_leave_past_the_budget_is_cut_short_and_a_quick_one_is_not() -> None:
    async def main() -> tuple[list[int], float, list[int]]:
        loop = asyncio.get_running_loop()
        exits: list[int] = []
        sig = ShutdownSignals(asyncio.Event(), hard_exit=exits.append)
        await sig.within_budget(asyncio.sleep(0.01), 0)  # quick: no exit
        quick = list(exits)
        sig = ShutdownSignals(asyncio.Event(), hard_exit=exits.append)
        sig.on_signal(signal.SIGTERM)
        sig.first_at = loop.time() - (SHUTDOWN_BUDGET_S - 0.2)  # the budget is nearly spent
        began = loop.time()
        await sig.within_budget(asyncio.sleep(60), 7)  # a leave stuck on the network
        return quick, loop.time() - began, exits

    quick, waited, exits = asyncio.run(main())
    assert quick == [] and exits == [7]
    assert 0.1 <= waited < 1.0
