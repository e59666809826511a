"""mDNS advertise / watch / discover on loopback (interfaces=["127.0.0.1"])."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from seedfl.net.mdns import SERVICE_TYPE, Advertisement, Discovery, ServiceRecord, discover

LO = "127.0.0.1"


def _ad(name: str, swarm_key: bytes, port: int) -> Advertisement:
    return Advertisement(
        name=name,
        node_id=os.urandom(16),
        swarm_key=swarm_key,
        config_fingerprint=os.urandom(32),
        port=port,
        protocol_version=1,
        addresses=(LO,),
    )


def test_instance_name_and_txt() -> None:
    ad = Advertisement("my box.lab", bytes(range(16)), b"\x01" * 16, b"\xaa" * 32, 7000, 1)
    assert ad.instance == "my-box-lab-00010203"
    assert ad.txt() == {"v": "1", "swarm": "01" * 16, "id": bytes(range(16)).hex(), "fp": "aa" * 8}
    assert sum(len(k) + len(v) + 2 for k, v in ad.txt().items()) < 400


def test_endpoints_bracket_ipv6() -> None:
    rec = ServiceRecord("x", ("10.0.0.1", "fe80::1"), 5, {})
    assert rec.endpoints == ["10.0.0.1:5", "[fe80::1]:5"]


async def _loopback_multicast_works() -> bool:
    a, b = Discovery(LO), Discovery(LO)
    try:
        await a.advertise(_ad("probe", os.urandom(16), 1))
        watch = b.watch(None, exclude_id=None)
        try:
            await asyncio.wait_for(anext(watch), 5.0)
            return True
        except TimeoutError:
            return False
        finally:
            await watch.aclose()
    except OSError:
        return False
    finally:
        await a.close()
        await b.close()


def test_two_services_found_on_loopback() -> None:
    async def scenario() -> None:
        if not await _loopback_multicast_works():
            pytest.skip("multicast on 127.0.0.1 does not work in this sandbox")
        ours, theirs = os.urandom(16), os.urandom(16)
        n1, n2, other, watcher = Discovery(LO), Discovery(LO), Discovery(LO), Discovery(LO)
        ad1, ad2 = _ad("alpha", ours, 7001), _ad("beta", ours, 7002)
        ad_other = _ad("gamma", theirs, 7003)
        try:
            await asyncio.gather(n1.advertise(ad1), n2.advertise(ad2), other.advertise(ad_other))
            seen: dict[str, ServiceRecord] = {}
            watch = watcher.watch(ours, exclude_id=ad1.node_id)
            deadline = time.monotonic() + 10
            try:
                while ad2.instance not in seen and time.monotonic() < deadline:
                    rec = await asyncio.wait_for(anext(watch), deadline - time.monotonic())
                    seen[rec.instance] = rec
            finally:
                await watch.aclose()
            # Only our swarm, and not the excluded node (ourselves).
            assert set(seen) == {ad2.instance}
            rec = seen[ad2.instance]
            assert rec.endpoints == [f"{LO}:7002"]
            assert rec.txt == ad2.txt()
            assert rec.node_id == ad2.node_id.hex()

            everyone = {r.instance: r for r in await discover(1.5, interface=LO)}
            assert {ad1.instance, ad2.instance, ad_other.instance} <= set(everyone)
            assert everyone[ad_other.instance].swarm == theirs.hex()
            assert everyone[ad1.instance].port == 7001
        finally:
            for d in (n1, n2, other, watcher):
                await d.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_service_type() -> None:
    assert SERVICE_TYPE == "_seedfl._tcp.local."


def test_close_then_cancel_watch_is_quiet() -> None:
    """A node closes discovery, then cancels the task that watches (Ctrl-C):
    the watch must end with CancelledError, not ``list.remove(x): x not in list``."""

    async def scenario() -> None:
        discovery = Discovery(LO)
        try:
            discovery.zeroconf  # noqa: B018 (created here so a sandbox without multicast skips)
        except OSError as exc:
            pytest.skip(f"no zeroconf on {LO}: {exc}")
        watch = discovery.watch(b"\x01" * 16)
        task = asyncio.create_task(anext(watch))
        deadline = time.monotonic() + 5
        while not discovery._browsers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(discovery._browsers) == 1, "the watch never started browsing"
        await discovery.close()
        assert discovery._browsers == []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await watch.aclose()  # already finished: a no-op, no second cancel

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_watch_closed_before_discovery_close() -> None:
    """The other order (``seedfl peers``): the watch closes first, then discovery."""

    async def scenario() -> None:
        discovery = Discovery(LO)
        try:
            discovery.zeroconf  # noqa: B018
        except OSError as exc:
            pytest.skip(f"no zeroconf on {LO}: {exc}")
        watch = discovery.watch(os.urandom(16))  # a swarm nobody advertises
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(watch), 0.3)
        await watch.aclose()
        assert discovery._browsers == []
        await discovery.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
