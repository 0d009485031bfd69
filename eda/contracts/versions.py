"""Versions of one event type and the upcasters between them.

A contract may evolve: ``@contract("order.placed", version=2)`` registers the second version beside the
first, and an upcaster turns the data of version 1 into version 2::

    @upcaster("order.placed", from_version=1)
    def add_channel(data: dict) -> dict:          # wire data (camelCase), as the JSON holds it
        return {**data, "channel": "web"}

Publishers send the newest version a process knows (or an older one asked for by its contract class);
the version travels in the CloudEvent's ``dataschema`` attribute (``urn:eda:events:<type>:v<N>``; an
event without one is version 1, as every client wrote before versions existed). A worker upcasts an
older event through the chain of upcasters to the newest version it knows before validating it, so
its handlers see one shape only.
"""

import re
from collections.abc import Callable

from eda.errors import ContractError, DefinitionError

Upcaster = Callable[[dict], dict]

_VERSIONS: dict[str, dict[int, object]] = {}  # type -> version -> Contract
_UPCASTERS: dict[str, dict[int, Upcaster]] = {}  # type -> from version -> function to the next version
_SCHEMA_ID = re.compile(r"urn:eda:events:(?P<type>[^\s]+):v(?P<version>[1-9][0-9]{0,8})")


def schema_id(event_type: str, version: int) -> str:
    """The URI naming one version of an event's schema: ``dataschema`` on the wire, ``$id`` in exports."""
    return f"urn:eda:events:{event_type}:v{version}"


def version_in(dataschema, event_type: str, newest: int) -> int:
    """The version a CloudEvent's ``dataschema`` names: 1 where it has none. Another producer's own
    schema URI says nothing eda can use: with one version of the type registered it is ignored (the
    event is read as that version, as before versions existed); with several it decides how the data is
    read, which is never guessed: a ContractError. eda's id of another type is a ContractError too."""
    if dataschema is None:
        return 1
    found = _SCHEMA_ID.fullmatch(dataschema) if isinstance(dataschema, str) else None
    if found is not None and found["type"] == event_type:
        return int(found["version"])
    if found is None and newest == 1 and len(_VERSIONS.get(event_type, ())) <= 1:
        return 1
    shown = repr(dataschema) if len(repr(dataschema)) <= 120 else f"{repr(dataschema)[:120]}..."
    raise ContractError(f"{event_type}: dataschema {shown} is not {schema_id(event_type, 'N')} (eda's schema id "
                        f"of this event type), which names the version of its data")


def add(contract) -> object:
    """Record one version of a type; returns the type's newest version."""
    known = _VERSIONS.setdefault(contract.type, {})
    known[contract.version] = contract
    return known[max(known)]


def registered(event_type: str, version: int):
    """The contract of that version of the type, or None."""
    return _VERSIONS.get(event_type, {}).get(version)


def of(event_type: str) -> list:
    """Every registered version of a type, oldest first."""
    return [c for _, c in sorted(_VERSIONS.get(event_type, {}).items())]


def upcaster(event, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``function(data) -> data`` turning the wire data of ``from_version`` of ``event`` (its type,
    CLI name's type, or contract class) into the next version's."""
    if not isinstance(from_version, int) or isinstance(from_version, bool) or from_version < 1:
        raise DefinitionError(f"upcaster of {event!r}: from_version must be a version number (1, 2, ...), "
                              f"not {from_version!r}")

    def register(function: Upcaster) -> Upcaster:
        event_type = _type_of(event)
        known = _UPCASTERS.setdefault(event_type, {})
        if known.get(from_version, function) is not function:
            raise DefinitionError(f"two upcasters of {event_type} from version {from_version}: "
                                  f"{_where(known[from_version])} and {_where(function)}")
        known[from_version] = function
        return function

    return register


def _type_of(event) -> str:
    if isinstance(event, str):
        return event
    contract = vars(event).get("eda_contract") if isinstance(event, type) else None
    if contract is None:
        raise DefinitionError(f"upcaster: {event!r} is not an event type or a @contract class")
    return contract.type


def _where(function) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def can_upcast(event_type: str, from_version: int, to_version: int) -> bool:
    """Whether a chain of upcasters leads from one version to the other."""
    steps = _UPCASTERS.get(event_type, {})
    return all(v in steps for v in range(from_version, to_version))


def upcast(event_type: str, data, from_version: int, to_version: int):
    """The wire data of ``from_version`` turned into ``to_version``'s, step by step; a ContractError
    naming the missing step, or the upcaster that failed and why."""
    steps = _UPCASTERS.get(event_type, {})
    for version in range(from_version, to_version):
        step = steps.get(version)
        if step is None:
            raise ContractError(f"{event_type}: version {from_version} cannot be read as version {to_version}: "
                                f"no upcaster from version {version}")
        if not isinstance(data, dict):
            raise ContractError(f"{event_type}: data must be a JSON object")
        try:
            data = step(dict(data))
        except Exception as exc:  # noqa: BLE001 - the upcaster's own failure: this event cannot be read
            raise ContractError(f"{event_type}: upcasting version {version} failed in {_where(step)}: "
                                f"{type(exc).__name__}: {exc}") from None
    return data


def problems(event_type: str) -> list[str]:
    """What keeps the type's versions from reading each other: an older registered version, or an
    upcaster's own version, with no chain of upcasters to the newest; an upcaster from the newest."""
    known = _VERSIONS.get(event_type, {})
    if not known:
        return []
    newest = max(known)
    found = []
    starts = sorted({*known, *_UPCASTERS.get(event_type, {})})
    for version in starts:
        if version >= newest:
            if version in _UPCASTERS.get(event_type, {}):
                found.append(f"{event_type}: an upcaster from version {version}, but version {newest} is the "
                             f"newest registered")
            continue
        if not can_upcast(event_type, version, newest):
            missing = next(v for v in range(version, newest) if v not in _UPCASTERS.get(event_type, {}))
            found.append(f"{event_type}: version {version} cannot be read as version {newest}: no upcaster from "
                         f"version {missing} (@upcaster({event_type!r}, from_version={missing}))")
    return found


def check(event_type: str) -> None:
    """A DefinitionError (a start error) naming what ``problems`` finds."""
    found = problems(event_type)
    if found:
        raise DefinitionError("; ".join(found))
