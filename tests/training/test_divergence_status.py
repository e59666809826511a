"""A node whose own steps stopped for divergence says so in its typed status:
``diverged`` is empty while fine, else the reason naming zo.lr and zo.eps; it
survives the StatusReply round trip and ``seedfl status`` prints it."""

from __future__ import annotations

from dataclasses import replace

from poolkit import engine
from test_divergence import _cfg
from test_learning import synthetic

from seedfl.cli.status import format_status
from seedfl.net.control import status_from_proto, status_to_proto
from seedfl.net.proto.seedfl.v1 import control_pb2 as pb
from seedfl.node.status_view import diverged_reason
from seedfl.training.trainer import TrainerThread


def _trained(lr: float, steps: int) -> TrainerThread:
    from seedfl.training.trainer import TrainerOptions

    t = TrainerThread(engine(_cfg(lr), synthetic(128, seed=0)), None, None,
                      publish=lambda b: None, options=TrainerOptions(max_steps=steps))
    t.start()
    assert t.steps_done.wait(120)
    t.stop()
    t.join(10)
    return t


def test_too_large_lr_shows_in_the_status_value_and_text() -> None:
    t = _trained(1.0, 400)
    reason = diverged_reason(t.error)
    assert "training diverged" in reason
    assert "zo.lr (now 1.0)" in reason and "zo.eps (now 0.001)" in reason
    blank = status_from_proto(pb.StatusReply())
    status = status_from_proto(status_to_proto(replace(blank, diverged=reason)))
    assert status.diverged == reason
    assert f"DIVERGED  {reason}" in format_status(status)


def test_fine_training_reports_nothing() -> None:
    t = _trained(2e-3, 20)
    assert t.error is None and diverged_reason(t.error) == ""
    status = status_from_proto(pb.StatusReply())
    assert status.diverged == "" and "DIVERGED" not in format_status(status)
