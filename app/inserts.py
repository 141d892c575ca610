"""Write a new row through SQLAlchemy Core from a model object, without the unit of work.

    report = Report(community_id=1, category=cat, building=building, ...)
    insert_new(report)      # INSERT ... RETURNING id; report.id is set
    insert_new(*photos)     # several rows of one model: still one statement
    insert_chain(report, event, job)   # rows of several models that refer to each other's new
                                       # ids (NewId): one statement on PostgreSQL

For the hottest creating path (a report submission): the ORM's flush of three new objects was
45 % of the request's CPU (change tracking, dependency sorting, post-fetch), while the rows are
plain INSERTs. The object is filled in as written - the columns' defaults applied here, the
foreign keys of its many-to-one relationships copied - so the response can be dumped from it
without reading it back. It never joins the session: nothing is flushed again, nothing expires
at the commit.

Limits: the session is not flushed first, so a foreign key to a pending ORM object needs that
object flushed (or inserted) before; related objects must already have their ids (or, in an
insert_chain, be written earlier in it); attributes are named as their columns; defaults are
plain values or functions of no arguments.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Insert,
    Select,
    String,
    bindparam,
    func,
    insert,
    inspect,
    literal,
    null,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapper, RelationshipDirection

from app.extensions import db


def insert_new(*objs) -> None:
    """INSERT the rows of new objects of one model in the session's transaction, by one
    statement however many there are, and set their primary keys."""
    mapper: Mapper = inspect(type(objs[0]))
    rows = [_values(obj, mapper) for obj in objs]
    new_ids = db.session.connection().execute(
        _statement(mapper), rows if len(rows) > 1 else rows[0]).scalars()
    for obj, new_id in zip(objs, new_ids, strict=True):
        setattr(obj, _id_key(mapper), new_id)


def insert_or_skip(table, **conflict):
    """INSERT ... ON CONFLICT DO NOTHING into `table` (a model or a Table) on the session's
    database, PostgreSQL or SQLite: a row that would break a unique constraint is skipped
    (`conflict`, e.g. index_elements=[...], names the constraint; else any)."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(**conflict)


@cache
def _statement(mapper: Mapper) -> Insert:
    """The table's INSERT ... RETURNING its key, in the order of the rows given (built once;
    the values come as parameters)."""
    (key,) = mapper.primary_key
    return insert(mapper.local_table).returning(key, sort_by_parameter_order=True)


@cache
def _id_key(mapper: Mapper) -> str:
    """The attribute holding the model's primary key."""
    (key,) = mapper.primary_key
    return mapper.get_property_by_column(key).key


def _id_of(obj) -> int | None:
    """The object's primary key (None until written)."""
    return getattr(obj, _id_key(inspect(type(obj))))


def row_of(obj) -> dict:
    """The column values of a new object, as insert_new would write them (for statements of
    one's own, e.g. insert_or_skip)."""
    return _values(obj, inspect(type(obj)))


def _values(obj, mapper: Mapper) -> dict:
    """The row: what was set on the object, its relationships' keys, the columns' defaults."""
    state = vars(obj)
    for rel in mapper.relationships:
        if rel.direction is RelationshipDirection.MANYTOONE and rel.key in state:
            target = state[rel.key]
            for local, remote in rel.local_remote_pairs:
                key = None if target is None else getattr(target, remote.key)
                if key is None and target is not None and remote.primary_key:
                    key = NewId(target)  # not written yet: earlier in the same insert_chain
                setattr(obj, local.key, key)
    values = {}
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if column.primary_key:
            continue
        default = column.default
        if prop.key not in state and default is not None and not default.is_clause_element:
            setattr(obj, prop.key, default.arg if default.is_scalar else default.arg(None))
        if prop.key in state:
            values[column.key] = state[prop.key]
    return values


class NewId:
    """The id `obj` gets when an insert_chain writes it: the value of an attribute, or of a key
    of a JSON attribute, of a row written after it in the same chain."""

    __slots__ = ("obj",)

    def __init__(self, obj) -> None:
        self.obj = obj

    def __repr__(self) -> str:
        return f"NewId({type(self.obj).__name__})"


def insert_chain(*objs) -> None:
    """INSERT new objects of any models in the order given and set their primary keys; on
    PostgreSQL by ONE statement (a data-modifying WITH clause per row), elsewhere one
    insert_new each.

    A later row refers to an earlier one's new id by a NewId - an attribute set to it, a
    top-level value of a JSON attribute, or a many-to-one relationship to the earlier object -
    and is left holding the id once written. A report, its photos, its timeline row and its
    routing job are one round trip to the database instead of four.
    """
    _check_new_ids(objs)
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        for obj in objs:  # in order: every row referred to is written before
            _resolve(obj)
            insert_new(obj)
        return
    rows = [(obj, inspect(type(obj))) for obj in objs]
    values = [_values(obj, mapper) for obj, mapper in rows]
    position = {id(obj): i for i, obj in enumerate(objs)}
    shape = tuple((mapper, tuple((key, _kind(value, position)) for key, value in row.items()))
                  for (_obj, mapper), row in zip(rows, values, strict=True))
    params = {f"r{i}_{key}{suffix}": value for i, row in enumerate(values)
              for key, column_value in row.items()
              for suffix, value in _params(column_value)}
    new_ids = connection.execute(_chain_statement(shape), params).one()
    for (obj, mapper), new_id in zip(rows, new_ids, strict=True):
        setattr(obj, _id_key(mapper), new_id)
    for obj in objs:
        _resolve(obj)


def _check_new_ids(objs) -> None:
    """Every NewId names an object written earlier in the chain (else: ValueError, before
    anything is written)."""
    earlier: set[int] = set()
    for obj in objs:
        mapper = inspect(type(obj))
        refs = [value for value in vars(obj).values() if isinstance(value, NewId)]
        refs += [v for value in vars(obj).values() if isinstance(value, dict)
                 for v in value.values() if isinstance(v, NewId)]
        refs += [NewId(target) for rel in mapper.relationships
                 if rel.direction is RelationshipDirection.MANYTOONE
                 for target in [vars(obj).get(rel.key)]
                 if target is not None and _id_of(target) is None]
        for ref in refs:
            if id(ref.obj) not in earlier:
                raise ValueError(f"{type(obj).__name__} refers to the new id of a "
                                 f"{type(ref.obj).__name__} not written before it in the chain")
        earlier.add(id(obj))


def _kind(value, position: dict[int, int]):
    """How a column's value is written: a parameter, an earlier row's id, or a JSON object
    holding earlier rows' ids (part of the statement's cache key)."""
    if isinstance(value, NewId):
        return ("id", position[id(value.obj)])
    if isinstance(value, dict) and any(isinstance(v, NewId) for v in value.values()):
        return ("json", tuple((k, ("id", position[id(v.obj)]) if isinstance(v, NewId)
                               else type(v).__name__) for k, v in value.items()))
    return "param"


def _params(value) -> list[tuple[str, object]]:
    """The statement's parameters for one column's value (name suffix, value)."""
    if isinstance(value, NewId):
        return []
    if isinstance(value, dict) and any(isinstance(v, NewId) for v in value.values()):
        return [(f"__{k}", v) for k, v in value.items() if not isinstance(v, NewId)]
    return [("", value)]


_JSON_TYPES = {"int": BigInteger, "str": String, "bool": Boolean, "float": Float}


@cache
def _chain_statement(shape: tuple) -> Select:
    """WITH r0 AS (INSERT ... RETURNING id), r1 AS (INSERT ... (SELECT id FROM r0) ...) ...
    SELECT (SELECT id FROM r0), (SELECT id FROM r1), ...: built once per shape, the values
    come as parameters."""
    written = []
    for i, (mapper, columns) in enumerate(shape):
        table, (key,) = mapper.local_table, mapper.primary_key
        row = {column: _value(table, f"r{i}_{column}", kind, written)
               for column, kind in columns}
        written.append(insert(table).values(row).returning(table.c[key.key]).cte(f"r{i}"))
    return select(*(select(row.c[0]).scalar_subquery() for row in written))


def _value(table, name: str, kind, written: list):
    """A column's value in the chain: its parameter, an earlier row's id (a scalar subquery of
    that row's WITH clause) or a JSON object built of both."""
    if kind == "param":
        return bindparam(name, type_=table.c[name.partition("_")[2]].type)
    if kind[0] == "id":
        return select(written[kind[1]].c[0]).scalar_subquery()
    parts = []
    for k, part in kind[1]:
        parts.append(literal(k))
        if isinstance(part, tuple):
            parts.append(select(written[part[1]].c[0]).scalar_subquery())
        elif part == "NoneType":
            parts.append(null())
        else:
            parts.append(bindparam(f"{name}__{k}", type_=_JSON_TYPES.get(part, JSON)()))
    return func.json_build_object(*parts, type_=JSON)


def _resolve(obj) -> None:
    """Put the ids of the earlier rows where the object holds NewIds."""
    for name, value in list(vars(obj).items()):
        if isinstance(value, NewId):
            setattr(obj, name, _id_of(value.obj))
        elif isinstance(value, dict) and any(isinstance(v, NewId) for v in value.values()):
            setattr(obj, name, {k: _id_of(v.obj) if isinstance(v, NewId) else v
                                for k, v in value.items()})
