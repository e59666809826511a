"""Pure core: seeds, the perturbation stream, codecs, updates, version vectors, the log.

Nothing here does network I/O or imports asyncio, grpc, zeroconf or transformers.
"""
