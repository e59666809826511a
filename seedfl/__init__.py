"""seedfl: decentralized zeroth-order finetuning that sends one byte per update."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 2

__all__ = ["PROTOCOL_VERSION", "__version__"]
