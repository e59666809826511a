"""One seedfl node: the trainer thread, the swarm, gRPC, mDNS, status, shutdown.

Start-up: open the state directory (refusing another swarm's), load the model,
recover weights from the newest checkpoint plus the log, load every logged
update into the store, start the trainer thread, then the gRPC server, mDNS
and the dialers. When peers may exist, the trainer starts paused and
``catchup.CatchUp`` brings the node up to its first peer's vector (by replay
or snapshot) before it steps; status shows joining → syncing → training.

The event loop owns sockets and the swarm state machine; the trainer thread
owns the model; they meet only in two queues (inbound batches to the
trainer, own batches back to the loop via ``call_soon_threadsafe``, each with
the ``TrainerState`` taken right after it), in ``TrainerThread.call``
(snapshots taken and installed between steps), and in ``TrainerThread.floor``
(``swarm.max_staleness``: the slowest live peer's count, see swarm/staleness.py).

Shutdown (SIGINT/SIGTERM, DESIGN §7): health NOT_SERVING, stop stepping,
flush pending pushes and announce Leave, withdraw mDNS, close links, stop the
server with a short grace, flush the log; exit 0. signals.py bounds it: past
SHUTDOWN_BUDGET_S after the signal, or on a second signal, the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from seedfl import PROTOCOL_VERSION, __version__
from seedfl.core.config import SwarmConfig, load_config
from seedfl.core.errors import UsageError
from seedfl.core.store import UpdateStore
from seedfl.core.updates import UpdateBatch
from seedfl.net.control import CONTROL_SERVICE, add_control
from seedfl.net.convert import Limits
from seedfl.net.mesh import Mesh
from seedfl.net.servicer import PeerServicer, build_server
from seedfl.net.tls import TLSFiles
from seedfl.node.catchup import CatchUp
from seedfl.node.options import NodeOptions
from seedfl.node.pool_catchup import serve_accumulators
from seedfl.node.served import Served
from seedfl.node.signals import ShutdownSignals
from seedfl.node.snapshot_service import SnapshotService
from seedfl.node.status_view import StatusView
from seedfl.observe.history import HistoryRecorder
from seedfl.observe.metrics_server import start_metrics
from seedfl.swarm.clock import MonotonicClock
from seedfl.swarm.gossip import GossipConfig
from seedfl.swarm.membership import MembershipConfig
from seedfl.swarm.messages import Hello
from seedfl.swarm.peer import PeerConfig, SwarmPeer
from seedfl.swarm.staleness import staleness_floor
from seedfl.swarm.views import ViewConfig
from seedfl.training.data import load_examples
from seedfl.training.engine import Engine
from seedfl.training.model import load_swarm_model
from seedfl.training.statedir import StateDir, default_state_dir, recover
from seedfl.training.task import Task
from seedfl.training.trainer import TrainerOptions, TrainerThread
from seedfl.training.trainer_state import TrainerState

if TYPE_CHECKING:
    import torch

    from seedfl.net.mdns import Discovery

log = logging.getLogger("seedfl.node")

_SHUTDOWN_GRACE = 1.0
_TRAINER_JOIN = 3.0
# zo.swarm_scale: a live peer counts in N while its last update is this recent (s).
CONTRIBUTOR_WINDOW = 30.0


def _advertised_host(listen_host: str, interface: str | None) -> str:
    if interface:
        return interface
    if listen_host not in ("0.0.0.0", "::", ""):
        return listen_host
    # Debian-style hosts resolve their own name to 127.0.1.1, useless to peers on
    # the LAN: prefer the address of the interface that routes outward. A UDP
    # connect picks it without sending a packet.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("224.0.0.251", 5353))
            routed = str(probe.getsockname()[0])
        if not routed.startswith("127.") and routed != "0.0.0.0":
            return routed
    except OSError:
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class NodeRuntime:
    """The composition root: builds every part from ``options`` and runs them.

    ``start()`` and ``shutdown()`` run on the caller's event loop; the public,
    awaitable face for Python users is ``seedfl.Node`` (api.py).
    """

    def __init__(self, options: NodeOptions) -> None:
        self.options = opts = options
        if isinstance(opts.config, SwarmConfig):
            self.cfg = opts.config
        elif opts.config:
            self.cfg = load_config(opts.config)
        else:
            raise UsageError("--config is required (create one with `seedfl init > swarm.toml`)")
        self.state = StateDir(Path(opts.state_dir) if opts.state_dir else default_state_dir())
        self.node_id, self.name, self.incarnation = self.state.open_node(self.cfg, opts.name)
        self.started = time.monotonic()
        self.phase = "starting"
        self.stop_requested = asyncio.Event()
        self.exit_code = 0
        # zo.swarm_scale's N (see _count_contributors): an int the loop assigns
        # and the trainer thread reads (atomic), so no lock crosses threads.
        self.contributors = 1
        self._heard: dict[bytes, float] = {}  # origin -> monotonic time of its last update

    # -- what the ports (ports.py) read beyond plain attributes ---------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.state.checkpoint_dir

    @property
    def trainable(self) -> list[torch.Tensor]:
        return self.bundle.params

    @property
    def model_params(self) -> int:
        return sum(p.numel() for p in self.bundle.model.parameters())

    # -- start ---------------------------------------------------------------------
    def _load(self) -> None:
        cfg, opts = self.cfg, self.options
        examples = load_examples(opts.data, cfg.task) if opts.data else []
        self.bundle = load_swarm_model(cfg, device=opts.device)
        self.task = Task.from_config(cfg.task, self.bundle.tokenizer)
        self.engine = Engine(cfg, self.bundle, self.task, examples, self.node_id)
        self.log = self.state.open_log(fsync=opts.fsync)
        self.recovery, logged = recover(self.engine, self.state, self.log)
        self.store = UpdateStore()
        self.store.load(logged)
        log.info("recovered: %s", self.recovery.describe())

    def _secret(self) -> bytes | None:
        path = self.options.secret_file or self.cfg.swarm.secret_file
        if not path:
            return None
        try:
            return Path(path).read_bytes().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the swarm secret {path}: {exc.strerror}") from None

    def tls(self) -> TLSFiles | None:
        """This node's TLS files (flags over config keys), or None for plaintext."""
        o, t = self.options, self.cfg.tls
        return TLSFiles.maybe(o.tls_cert or t.cert or None, o.tls_key or t.key or None,
                              o.tls_ca or t.ca or None,
                              t.mutual if o.tls_mutual is None else o.tls_mutual)

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            # The directory lock is the one thing a failed start must not keep:
            # the user's next try (or another Node in this process) needs it.
            self.state.close()
            raise

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        tls = self.tls()
        if tls is not None:
            tls.server_credentials()  # unreadable files fail now, not after the model loads
        await loop.run_in_executor(None, self._load)
        host, _, port = self.options.listen.rpartition(":")
        # publish runs on the trainer thread right after ``trainer.state``
        # took the batch in: the pair crosses to the loop in one callback.
        self.trainer = TrainerThread(
            self.engine, self.log, self.state.checkpoint_dir,
            publish=lambda b: self._publish_from_trainer(loop, b),
            options=TrainerOptions(max_steps=self.options.max_steps,
                                   checkpoint_every=self.options.checkpoint_every,
                                   step_interval=self.options.step_interval,
                                   max_staleness=self.cfg.swarm.max_staleness),
            contributors=lambda: self.contributors)
        # The trainer state as of the last own batch the loop stored (see StatusView).
        self.published: TrainerState = self.trainer.state
        self.catchup = CatchUp(self)
        if self.options.peers or self.options.mdns:
            self.phase = "joining"
            self.trainer.paused.set()
        else:  # nobody to learn from: train on what the state directory holds
            self.catchup.holding = False
            self.catchup.state, self.catchup.progress = "done", 1.0
        served = Served(SnapshotService(self.state.checkpoint_dir, self.engine, self.trainer),
                        lambda: serve_accumulators(self.engine, self.trainer))
        wire_bits = 1 if self.cfg.codec.name == "sign1" else 8
        zo = self.cfg.zo  # pool slots travel only with importance sampling (DESIGN §5)
        limits = Limits(pool_slots=zo.pool_size if zo.seeds == "pool"
                        and zo.pool_sampling == "importance" else 0)
        servicer = PeerServicer(served, wire_bits=wire_bits, limits=limits,
                                self_id=self.node_id)
        self.view = StatusView(self)
        # Bound before the gRPC server so a taken port fails before anything runs;
        # until the swarm exists a scrape is answered 500.
        self.metrics = await start_metrics(self.options.metrics_port, host, self.view.status,
                                           self.state.path)
        self.server = await build_server(
            servicer, f"{host or '0.0.0.0'}:{port or 0}", tls=tls,
            extra=lambda s: add_control(s, self.view.status), extra_names=[CONTROL_SERVICE])
        self.servicer = servicer
        self.address = f"{_advertised_host(host, self.options.interface)}:{self.server.port}"
        hello = Hello(PROTOCOL_VERSION, __version__, self.cfg.swarm_key(), self.cfg.fingerprint(),
                      self.engine.fingerprint, self.node_id, self.incarnation, self.name,
                      self.address)
        self.swarm = SwarmPeer(
            hello, self.store, on_deliver=self._deliver, clock=MonotonicClock(),
            config=PeerConfig(gossip=GossipConfig(
                rate_cap=self.cfg.swarm.rate_cap, max_origins=self.cfg.swarm.max_origins,
                # Under max_staleness peers wait on our updates: push at once
                # rather than fill frames (GossipConfig's batching trade-off).
                batch_target=1 if self.cfg.swarm.max_staleness > 0 else
                GossipConfig.batch_target),
                              membership=self._membership(), views=self._views()),
            secret=self._secret(), code_valid=self.engine.codec.valid)
        self.mesh = Mesh(self.swarm, wire_bits=wire_bits, limits=limits, tls=tls)
        served.attach(self.mesh)
        self.trainer.start()
        if self.phase == "starting":
            self.phase = "training" if self.engine.can_train() else "relaying"
        self.history = HistoryRecorder(self.state.path, self.view.status)
        (self.state.path / "node.addr").write_text(self.address + "\n")
        self._tasks = [asyncio.create_task(self.mesh.run()),
                       asyncio.create_task(self._watch()),
                       asyncio.create_task(self.history.run())]
        if self.phase == "joining":
            self._tasks.append(asyncio.create_task(self.catchup.run()))
        for peer in self.options.peers:
            self.mesh.dial(peer)
        self.discovery: Discovery | None = None
        if self.options.mdns:
            self._tasks.append(asyncio.create_task(self._mdns()))
        log.info("node %s (%s) listening on %s", self.name, self.node_id.hex()[:8], self.address)

    def _views(self) -> ViewConfig:
        size = self.options.active_view
        if size < 0:
            raise UsageError(f"--active-view must be 0 or more, not {size}")
        return ViewConfig(active_size=size, dial_target=max(1, size // 2) if size else 4)

    def _membership(self) -> MembershipConfig:
        suspect = self.options.suspect_after or MembershipConfig.suspect_after
        dead = self.options.dead_after or MembershipConfig.dead_after
        return MembershipConfig(ping_interval=min(MembershipConfig.ping_interval, suspect / 3),
                                suspect_after=suspect,
                                dead_after=dead)

    def _deliver(self, batch: UpdateBatch) -> None:
        # While catching up the store keeps what arrives; CatchUp hands it over.
        if not self.catchup.holding:
            self.trainer.submit(batch)
        self._heard[batch.origin] = time.monotonic()
        self._update_floor()
        self._count_contributors()

    def _count_contributors(self) -> None:
        """N for zo.swarm_scale: 1 (this node) + the members that membership
        says are alive now and whose update reached us within the last
        CONTRIBUTOR_WINDOW seconds. A relay, a node that stopped stepping, or
        one that suspects, dies or leaves stops counting (after the window for
        the first two, at once for the others)."""
        now = time.monotonic()
        self.contributors = 1 + sum(
            1 for mem in self.swarm.membership.members()
            if mem.state == "alive" and mem.node_id != self.node_id
            and now - self._heard.get(mem.node_id, -math.inf) <= CONTRIBUTOR_WINDOW)

    def _publish_from_trainer(self, loop: asyncio.AbstractEventLoop, batch: UpdateBatch) -> None:
        loop.call_soon_threadsafe(self._on_own, batch, self.trainer.state)

    def _on_own(self, batch: UpdateBatch, state: TrainerState) -> None:
        self.published = state
        self.mesh.route(self.swarm.publish(batch))

    def _update_floor(self) -> None:
        """swarm.max_staleness: tell the trainer how far the slowest live peer is."""
        if self.cfg.swarm.max_staleness > 0:
            self.trainer.floor = staleness_floor(
                self.node_id, self.store.version_vector(), self.swarm.membership.members())

    def _mdns_addresses(self) -> tuple[str, ...]:
        """Listening on every interface: advertise every non-loopback address."""
        host = self.options.listen.rpartition(":")[0].strip("[]")
        if self.options.interface or host not in ("0.0.0.0", "::", ""):
            return (self.address.rpartition(":")[0],)
        return ()  # Advertisement: empty = all of the host's IPv4 addresses

    async def _mdns(self) -> None:
        from seedfl.net.mdns import Advertisement, Discovery

        try:
            self.discovery = discovery = Discovery(interface=self.options.interface)
            ad = Advertisement(self.name, self.node_id, self.cfg.swarm_key(),
                               self.cfg.fingerprint(), self.server.port, PROTOCOL_VERSION,
                               addresses=self._mdns_addresses())
            await discovery.advertise(ad)
            async for record in discovery.watch(self.cfg.swarm_key(),
                                                     exclude_id=self.node_id):
                for endpoint in record.endpoints:
                    self.mesh.dial(endpoint, bytes.fromhex(record.node_id), persistent=False)
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # discovery is a hint; static peers still work
            log.warning("mDNS unavailable (%s); use --peer host:port", exc)

    async def _watch(self) -> None:
        """Trainer health, applied-state fingerprint for divergence, auto-exit."""
        while True:
            if self.trainer.error is not None:
                self.exit_code = 1
                self.stop_requested.set()
                return
            # Cheap: reads the trainer's latest fingerprint, compares with peers'.
            self.view.refresh_projection()
            self._update_floor()  # a peer that died or left no longer holds us back
            self._count_contributors()
            if self.options.exit_after_steps and self.trainer.steps_done.is_set() and \
                    self.view.peers_have_our_updates():
                self.stop_requested.set()
                return
            await asyncio.sleep(0.2)

    # -- stop ----------------------------------------------------------------------
    async def shutdown(self) -> None:
        self.phase = "leaving"
        loop = asyncio.get_running_loop()
        await self.server.set_serving(False)
        self.trainer.stop()
        await self.mesh.leave(deadline=0.5)
        if self.discovery is not None:
            # Best effort: the records expire on their own anyway.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.discovery.close(), 1.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.history.record()
        if self.metrics is not None:
            await self.metrics.close()
        await self.mesh.close()
        await self.server.stop(_SHUTDOWN_GRACE)
        await loop.run_in_executor(None, self.trainer.join, _TRAINER_JOIN)
        if not self.trainer.is_alive():
            self.log.close()
            self.state.close()  # a trainer still writing keeps the directory locked


async def _amain(options: NodeOptions) -> int:
    node = NodeRuntime(options)
    signals = ShutdownSignals(node.stop_requested)
    signals.install(asyncio.get_running_loop())
    starting = asyncio.create_task(node.start())
    stopping = asyncio.create_task(node.stop_requested.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # a signal while loading: let the start finish, within the budget
        await signals.within_budget(asyncio.shield(starting), 128 + signal.SIGTERM)
    await starting  # raises what a failed start raised
    reporter = None if options.quiet else asyncio.create_task(node.view.progress_lines())
    await stopping
    if reporter is not None:
        reporter.cancel()
    await signals.within_budget(node.shutdown(), node.exit_code)
    if node.trainer.error is not None:
        print(f"seedfl run: {node.trainer.error}", flush=True)
    return node.exit_code


def run_node(options: NodeOptions) -> int:
    """Run a node until SIGINT/SIGTERM (or exit_after_steps); its exit status."""
    logging.basicConfig(level=os.environ.get("SEEDFL_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_amain(options))
    return uvloop.run(_amain(options))
