"""Status picks the trainer state that agrees with the store (issue 12: the
fuzz test once saw ``version_vector[own] == 11`` next to ``own_seq == 12``):
the trainer's latest state when its own count equals the store's, else the
state that crossed to the loop with the last own batch."""

from __future__ import annotations

from types import SimpleNamespace

from seedfl.core.store import UpdateStore
from seedfl.core.updates import UpdateBatch
from seedfl.core.version_vector import VersionVector
from seedfl.node.status_view import StatusView
from seedfl.training.engine import EngineStats
from seedfl.training.trainer_state import TrainerState

ME = b"\x01" * 16


def _state(own: int) -> TrainerState:
    vv = VersionVector({ME: own})
    return TrainerState(own_seq=own, applied=vv, applied_digest=vv.digest(),
                        applied_total=vv.total(), projection=0.0, projection_norm=1.0,
                        stats=EngineStats(steps=own))


def _view(stored: int, latest: int, published: int) -> StatusView:
    store = UpdateStore()
    if stored:
        store.add(UpdateBatch(ME, 0, b"\x01" * stored))
    node = SimpleNamespace(node_id=ME, store=store, trainer=SimpleNamespace(state=_state(latest)),
                           published=_state(published))
    return StatusView(node)  # type: ignore[arg-type]


def test_latest_state_when_the_loop_has_stored_its_batch() -> None:
    assert _view(stored=12, latest=12, published=12).trainer_state().own_seq == 12


def test_published_state_while_the_latest_batch_is_still_crossing() -> None:
    # The trainer made update 12 (latest) but the loop has stored 11 so far.
    assert _view(stored=11, latest=12, published=11).trainer_state().own_seq == 11


def test_latest_state_when_neither_matches() -> None:
    # Our origin's count moved outside our own steps: say what the trainer has.
    assert _view(stored=3, latest=12, published=11).trainer_state().own_seq == 12
