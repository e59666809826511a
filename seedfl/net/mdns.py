"""mDNS discovery of seedfl nodes on the LAN (DESIGN §7).

A node advertises ``_seedfl._tcp.local.`` as ``<name>-<short id>`` with TXT
keys ``v`` (protocol version), ``swarm`` (swarm key, hex), ``id`` (node id,
hex) and ``fp`` (short config fingerprint, hex). :class:`Discovery` registers
that record and watches for records of one swarm; :func:`discover` lists every
seedfl record on the LAN once, whatever the swarm (``seedfl peers``).

Everything here must be created inside the running event loop. mDNS is
unauthenticated and cached for minutes: a record is a hint of where a node
might listen, never proof that it is alive or who it is; the Hello handshake
decides. This module knows nothing of grpc or of the swarm protocol.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from zeroconf import IPVersion, ServiceStateChange, Zeroconf, get_all_addresses  # type: ignore[attr-defined]
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

SERVICE_TYPE = "_seedfl._tcp.local."
SHORT_ID_BYTES = 4
SHORT_FP_BYTES = 8
_RESOLVE_MS = 3000
_NAME_RE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Advertisement:
    """What this node publishes about itself."""

    name: str
    node_id: bytes
    swarm_key: bytes
    config_fingerprint: bytes
    port: int
    protocol_version: int
    addresses: tuple[str, ...] = ()  # empty: every IPv4 address of the host

    @property
    def instance(self) -> str:
        label = _NAME_RE.sub("-", self.name).strip("-")[:40] or "node"
        return f"{label}-{self.node_id[:SHORT_ID_BYTES].hex()}"

    def txt(self) -> dict[str, str]:
        return {
            "v": str(self.protocol_version),
            "swarm": self.swarm_key.hex(),
            "id": self.node_id.hex(),
            "fp": self.config_fingerprint[:SHORT_FP_BYTES].hex(),
        }


@dataclass(frozen=True)
class ServiceRecord:
    """One resolved seedfl service: where it says it listens and its TXT keys."""

    instance: str
    addresses: tuple[str, ...]
    port: int
    txt: dict[str, str] = field(default_factory=dict)

    @property
    def swarm(self) -> str:
        return self.txt.get("swarm", "")

    @property
    def node_id(self) -> str:
        return self.txt.get("id", "")

    @property
    def endpoints(self) -> list[str]:
        """``host:port`` strings to dial, IPv6 hosts bracketed."""
        return [f"[{a}]:{self.port}" if ":" in a else f"{a}:{self.port}" for a in self.addresses]


def _zeroconf(interface: str | None) -> AsyncZeroconf:
    if interface is None:
        return AsyncZeroconf(ip_version=IPVersion.V4Only)
    version = IPVersion.V6Only if ":" in interface else IPVersion.V4Only
    return AsyncZeroconf(interfaces=[interface], ip_version=version)


def _decode_txt(properties: dict[bytes, bytes | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in properties.items():
        try:
            out[key.decode("ascii")] = (value or b"").decode("ascii")
        except UnicodeDecodeError:
            continue  # a foreign or broken record; the keys we read are ASCII
    return out


async def _resolve(zc: Zeroconf, name: str) -> ServiceRecord | None:
    info = AsyncServiceInfo(SERVICE_TYPE, name)
    if not await info.async_request(zc, _RESOLVE_MS) or info.port is None:
        return None
    instance = name.removesuffix("." + SERVICE_TYPE)
    return ServiceRecord(
        instance=instance,
        addresses=tuple(info.parsed_scoped_addresses()),
        port=info.port,
        txt=_decode_txt(info.properties),
    )


class Discovery:
    """Advertise this node and watch for nodes of its swarm.

    ``interface`` is an IP address of the interface to use for mDNS (the same
    one the listener binds, ``--interface``); None uses every IPv4 interface.
    """

    def __init__(self, interface: str | None = None) -> None:
        self._interface = interface
        self._azc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._browsers: list[AsyncServiceBrowser] = []

    @property
    def zeroconf(self) -> AsyncZeroconf:
        if self._azc is None:
            self._azc = _zeroconf(self._interface)  # inside the running loop
        return self._azc

    async def advertise(self, ad: Advertisement) -> str:
        """Register the record; returns the full service name."""
        if self._info is not None:
            raise RuntimeError("already advertising; call withdraw() first")
        addresses = ad.addresses or ((self._interface,) if self._interface else ())
        if not addresses:
            addresses = tuple(a for a in get_all_addresses() if not a.startswith("127."))
        family = {True: socket.AF_INET6, False: socket.AF_INET}
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{ad.instance}.{SERVICE_TYPE}",
            addresses=[socket.inet_pton(family[":" in a], a) for a in addresses],
            port=ad.port,
            properties=ad.txt(),
            server=f"seedfl-{ad.node_id[:SHORT_ID_BYTES].hex()}.local.",
        )
        await self.zeroconf.async_register_service(self._info)
        return self._info.name

    async def withdraw(self) -> None:
        """Unregister our record (sends goodbye packets)."""
        if self._info is not None and self._azc is not None:
            await self._azc.async_unregister_service(self._info)
        self._info = None

    async def watch(
        self, swarm_key: bytes | None, exclude_id: bytes | None = None
    ) -> AsyncGenerator[ServiceRecord, None]:
        """Yield records as they appear or change, for swarm_key only (None: all).

        Records of other swarms and of ``exclude_id`` (normally our own id) are
        skipped; the same node may be yielded again when its record changes.
        """
        queue: asyncio.Queue[ServiceRecord] = asyncio.Queue()
        zc = self.zeroconf.zeroconf
        pending: set[asyncio.Task[None]] = set()
        want_swarm = swarm_key.hex() if swarm_key is not None else None
        skip_id = exclude_id.hex() if exclude_id is not None else None

        async def resolve(name: str) -> None:
            record = await _resolve(zc, name)
            if record is None:
                return
            if want_swarm is not None and record.swarm != want_swarm:
                return
            if skip_id is not None and record.node_id == skip_id:
                return
            queue.put_nowait(record)

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
                task = asyncio.get_running_loop().create_task(resolve(name))
                pending.add(task)
                task.add_done_callback(pending.discard)

        browser = AsyncServiceBrowser(zc, [SERVICE_TYPE], handlers=[on_change])
        self._browsers.append(browser)
        try:
            while True:
                yield await queue.get()
        finally:
            for task in pending:
                task.cancel()
            # close() may have cancelled this browser already (a node closes
            # discovery before it cancels the task that watches): once only.
            if browser in self._browsers:
                self._browsers.remove(browser)
                await browser.async_cancel()

    async def close(self) -> None:
        """Withdraw, stop every browser, close zeroconf. Watches still open end
        quietly when their consumer closes or cancels them."""
        await self.withdraw()
        browsers, self._browsers = self._browsers, []
        for browser in browsers:
            await browser.async_cancel()
        if self._azc is not None:
            await self._azc.async_close()
            self._azc = None


async def discover(timeout: float, interface: str | None = None) -> list[ServiceRecord]:
    """Every seedfl record seen on the LAN within ``timeout`` seconds, any swarm."""
    discovery = Discovery(interface)
    found: dict[str, ServiceRecord] = {}
    deadline = time.monotonic() + timeout
    watch = discovery.watch(None)
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                record = await asyncio.wait_for(anext(watch), left)
            except TimeoutError:
                break
            found[record.instance] = record
    finally:
        await watch.aclose()
        await discovery.close()
    return sorted(found.values(), key=lambda r: r.instance)
