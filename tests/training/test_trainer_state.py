"""The trainer's published state (issue 12): one immutable snapshot whose own
count, applied vector and counters agree, taken before each own batch is
published; and ``max_staleness``: own steps wait while own_seq − floor ≥ N."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from poolkit import ME, TASK, engine

from seedfl.core.config import ModelConfig, SwarmConfig, ZOConfig
from seedfl.core.updates import UpdateBatch
from seedfl.training.data import Example
from seedfl.training.trainer import TrainerOptions, TrainerThread
from seedfl.training.trainer_state import TrainerState

CFG = SwarmConfig(model=ModelConfig(name="seedfl:tiny"), task=TASK,
                  zo=ZOConfig(lr=1e-3, batch_size=4))
EXAMPLES = [Example(text=f"ab{i}", label=str(i % 2)) for i in range(16)]


def _wait(pred: Callable[[], Any], what: str, deadline_s: float = 60) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if got := pred():
            return got
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _consistent(st: TrainerState) -> None:
    assert st.own_seq == st.applied.get(ME)
    assert st.applied_total == st.applied.total()
    assert st.applied_digest == st.applied.digest()


def test_each_published_batch_comes_after_a_state_that_holds_it() -> None:
    seen: list[tuple[UpdateBatch, TrainerState]] = []
    box: list[TrainerThread] = []
    trainer = TrainerThread(engine(CFG, EXAMPLES), None, None,
                            lambda b: seen.append((b, box[0].state)),
                            TrainerOptions(max_steps=6))
    box.append(trainer)
    _consistent(trainer.state)
    assert trainer.state.own_seq == 0
    trainer.start()
    try:
        _wait(trainer.steps_done.is_set, "six steps")
    finally:
        trainer.stop()
        trainer.join(10)
    assert trainer.error is None
    assert [b.first_seq for b, _ in seen] == list(range(6))
    for batch, st in seen:
        _consistent(st)
        assert st.own_seq == batch.end_seq  # the state already holds the batch
        assert st.stats.steps == batch.end_seq
    _consistent(trainer.state)
    assert trainer.state.own_seq == 6


def test_max_staleness_holds_own_steps_to_the_floor() -> None:
    published: list[int] = []
    trainer = TrainerThread(engine(CFG, EXAMPLES), None, None,
                            lambda b: published.append(b.end_seq),
                            TrainerOptions(max_steps=20, max_staleness=3))
    trainer.floor = 1  # the slowest live peer has made one update
    trainer.start()
    try:
        _wait(lambda: trainer.state.held_by_staleness, "the trainer to wait")
        assert trainer.state.own_seq == 4 and published == [1, 2, 3, 4]  # 4 − 1 = 3
        assert trainer.state.staleness_waits == 1
        assert not trainer.steps_done.is_set()  # waiting is not finishing
        trainer.floor = 5
        _wait(lambda: trainer.state.own_seq == 8 and trainer.state.held_by_staleness,
              "four more steps, then the wait again")
        assert trainer.state.staleness_waits == 2
        trainer.floor = None  # the slow peer died: nobody to wait for
        _wait(trainer.steps_done.is_set, "the remaining steps")
    finally:
        trainer.stop()
        trainer.join(10)
    assert trainer.error is None
    assert published == list(range(1, 21))
    assert not trainer.state.held_by_staleness


def test_calls_after_the_thread_ended_run_at_once_instead_of_hanging() -> None:
    # A model that makes every loss NaN: the first step diverges and the thread ends.
    eng = engine(CFG, EXAMPLES)
    for p in eng.bundle.params:
        p.data.fill_(float("nan"))
    trainer = TrainerThread(eng, None, None, lambda b: None, TrainerOptions(max_steps=5))
    trainer.start()
    trainer.join(30)
    assert not trainer.is_alive() and trainer.error is not None
    fut = trainer.call(lambda: 41 + 1)
    assert fut.done() and fut.result(timeout=0) == 42
