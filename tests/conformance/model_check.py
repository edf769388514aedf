"""Checks of a response against botocore's own service model (never a hand copy).

`missing_required` walks the *parsed* response: every member the model marks required must be
present, recursively through structures, lists and maps; string members with an enum must hold
one of its values.

`unmodelled_keys` walks the *raw* JSON body: every key must be a member the model names, spelled
as the model spells it (botocore silently drops unknown keys, so a misspelt member such as
`message` for `Message` would otherwise go unnoticed).
"""

from botocore.model import ListShape, MapShape, Shape, StructureShape


def missing_required(shape: Shape, value, path: str = "$") -> list[str]:
    problems: list[str] = []
    if value is None:
        return problems
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            return [f"{path}: expected a structure ({shape.name}), got {type(value).__name__}"]
        for name in shape.required_members:
            if value.get(name) is None:
                problems.append(f"{path}.{name}: required by {shape.name}, missing")
        for name, member in shape.members.items():
            if name in value:
                problems += missing_required(member, value[name], f"{path}.{name}")
    elif isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{path}: expected a list ({shape.name}), got {type(value).__name__}"]
        for i, item in enumerate(value):
            problems += missing_required(shape.member, item, f"{path}[{i}]")
    elif isinstance(shape, MapShape):
        for key, item in value.items():
            problems += missing_required(shape.value, item, f"{path}[{key!r}]")
    elif shape.type_name == "string" and shape.enum:
        if value not in shape.enum:
            problems.append(f"{path}: {value!r} is not in the enum of {shape.name} {shape.enum}")
    return problems


def unmodelled_keys(shape: Shape, raw, path: str = "$", extra: frozenset = frozenset()) -> list[str]:
    """Keys of the raw JSON body that the model does not name (body members only)."""
    problems: list[str] = []
    if raw is None:
        return problems
    if isinstance(shape, StructureShape) and isinstance(raw, dict):
        by_wire_name = {
            member.serialization.get("name", name): member
            for name, member in shape.members.items()
            if "location" not in member.serialization
        }
        for key, item in raw.items():
            if key in extra:
                continue
            member = by_wire_name.get(key)
            if member is None:
                problems.append(
                    f"{path}.{key}: not a member of {shape.name} (members: {sorted(by_wire_name)})"
                )
            else:
                problems += unmodelled_keys(member, item, f"{path}.{key}")
    elif isinstance(shape, ListShape) and isinstance(raw, list):
        for i, item in enumerate(raw):
            problems += unmodelled_keys(shape.member, item, f"{path}[{i}]")
    elif isinstance(shape, MapShape) and isinstance(raw, dict):
        for key, item in raw.items():
            problems += unmodelled_keys(shape.value, item, f"{path}[{key!r}]")
    return problems
