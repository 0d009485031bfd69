"""Event contracts: the CloudEvents envelope and each event type's marshmallow schema."""

from contracts.envelope import Event, decode, encode, new_event
from contracts.registry import CONTRACTS, Contract, get

__all__ = ["CONTRACTS", "Contract", "Event", "decode", "encode", "get", "new_event"]
