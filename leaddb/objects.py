"""What each migration file does to the schema, object by object, read from its statements.

Every object is keyed the way the catalog snapshot keys it (``("constraint",
"leads.leads_id_pk")``), so a file's objects can be looked up in a live snapshot.
Statements are read with PostgreSQL's parser (pglast); the bodies of ``DO`` blocks are
read with its PL/pgSQL parser, and the SQL they run (and constant ``EXECUTE`` strings)
is read like any statement. Names PostgreSQL picks itself — an unnamed constraint, the
index behind it, an identity column's sequence — are picked as PostgreSQL 15 picks them
(``makeObjectName``, ``ChooseRelationName``, ``ChooseConstraintName``,
``ChooseIndexColumnNames``), in the order it picks them, so they match the catalog.

A file *creates* objects, *drops* objects, or *alters* the definition of objects an
earlier file created. Statements that change no object the snapshot records (GRANT,
COMMENT, INSERT, SET, ...) are ignored; DDL whose effect is not modelled (RENAME, ...)
is kept as a note, so a caller can say its answer may be incomplete.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pglast
from pglast import ast
from pglast.enums import A_Expr_Kind, AlterTableType, ConstrType, MinMaxOp, ObjectType
from pglast.parser import ParseError, parse_plpgsql_json

from leaddb.catalog import SCHEMA
from leaddb.effects import TABLE_PARTS, Effect, FileEffects  # noqa: F401 - the shape of what this reads
from leaddb.migrations import Migration

NAMEDATALEN = 64
_SERIAL_TYPES = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}


# -- names as PostgreSQL 15 chooses them ---------------------------------------------------


def _clip(name: str, nbytes: int) -> str:
    """pg_mbcliplen: the longest prefix of at most ``nbytes`` bytes that ends on a character."""
    return name.encode("utf-8")[:nbytes].decode("utf-8", errors="ignore")


def truncate_identifier(name: str) -> str:
    return _clip(name, NAMEDATALEN - 1)


def make_object_name(name1: str, name2: str | None, label: str | None) -> str:
    """makeObjectName: ``name1_name2_label`` within NAMEDATALEN-1 bytes, shortening the
    longer of name1 and name2 one byte at a time."""
    overhead = (1 if name2 is not None else 0) + (len(label.encode()) + 1 if label else 0)
    available = NAMEDATALEN - 1 - overhead
    n1, n2 = len(name1.encode()), len(name2.encode()) if name2 is not None else 0
    while n1 + n2 > available:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    parts = [_clip(name1, n1)]
    if name2 is not None:
        parts.append(_clip(name2, n2))
    if label:
        parts.append(label)
    return "_".join(parts)


def _name_addition(names: Sequence[str]) -> str:
    """ChooseIndexNameAddition / ChooseForeignKeyConstraintNameAddition."""
    out = ""
    for name in names:
        if out:
            out += "_"
        out += _clip(name, NAMEDATALEN - 1)
        if len(out.encode()) >= NAMEDATALEN:
            break
    return out


def _index_column_names(names: Sequence[str]) -> list[str]:
    """ChooseIndexColumnNames: each index column's name, made unique within the index."""
    result: list[str] = []
    for original in names:
        current, i = original, 0
        while current in result:
            i += 1
            suffix = str(i)
            current = _clip(original, NAMEDATALEN - 1 - len(suffix)) + suffix
        result.append(current)
    return result


def _figure_colname(node) -> tuple[str | None, int]:
    """FigureColnameInternal, for the expressions an index column can be: a name and how
    strongly it holds (2 a column or function name, 1 a fallback like "case", 0 none)."""
    if isinstance(node, ast.ColumnRef):
        last = node.fields[-1]
        return (last.sval, 2) if isinstance(last, ast.String) else (None, 0)
    if isinstance(node, ast.A_Indirection):
        last = node.indirection[-1]
        return (last.sval, 2) if isinstance(last, ast.String) else _figure_colname(node.arg)
    if isinstance(node, ast.FuncCall):
        return node.funcname[-1].sval, 2
    if isinstance(node, ast.A_Expr) and node.kind == A_Expr_Kind.AEXPR_NULLIF:
        return "nullif", 2
    if isinstance(node, ast.TypeCast):
        name, strength = _figure_colname(node.arg)
        if strength <= 1 and node.typeName is not None:
            return node.typeName.names[-1].sval, 1
        return name, strength
    if isinstance(node, ast.CollateClause):
        return _figure_colname(node.arg)
    if isinstance(node, ast.CaseExpr):
        name, strength = _figure_colname(node.defresult) if node.defresult is not None else (None, 0)
        return ("case", 1) if strength <= 1 else (name, strength)
    if isinstance(node, ast.MinMaxExpr):
        return ("greatest" if node.op == MinMaxOp.IS_GREATEST else "least"), 2
    named = {ast.A_ArrayExpr: "array", ast.RowExpr: "row", ast.CoalesceExpr: "coalesce"}
    for node_type, name in named.items():
        if isinstance(node, node_type):
            return name, 2
    return None, 0


def _index_elem_name(elem: ast.IndexElem) -> str:
    if elem.indexcolname:
        return elem.indexcolname
    if elem.name:
        return elem.name
    return _figure_colname(elem.expr)[0] or "expr"


def _column_refs(node) -> set[str]:
    """The distinct columns an expression refers to (pull_var_clause, by name)."""
    found: set[str] = set()

    def walk(value):
        if isinstance(value, ast.ColumnRef):
            last = value.fields[-1]
            if isinstance(last, ast.String):
                found.add(last.sval)
        elif isinstance(value, ast.Node):
            for attr in value:
                walk(getattr(value, attr))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(node)
    return found


class _Namer:
    """The names already taken in the schema: relations (pg_class) and constraints."""

    def __init__(self) -> None:
        self.relations: set[str] = set()
        self.constraints: set[str] = set()

    def relation(self, name1: str, name2: str | None, label: str, *, isconstraint: bool) -> str:
        """ChooseRelationName."""
        attempt, modlabel = 0, label
        while True:
            name = make_object_name(name1, name2, modlabel)
            if name not in self.relations and not (isconstraint and name in self.constraints):
                return name
            attempt += 1
            modlabel = f"{label}{attempt}"

    def constraint(self, name1: str, name2: str | None, label: str) -> str:
        """ChooseConstraintName."""
        attempt, modlabel = 0, label
        while True:
            name = make_object_name(name1, name2, modlabel)
            if name not in self.constraints:
                return name
            attempt += 1
            modlabel = f"{label}{attempt}"


# -- statements -------------------------------------------------------------------------


def _ours(schemaname: str | None) -> bool:
    return schemaname in (None, SCHEMA)


def _qualified(names: Sequence) -> tuple[str | None, str]:
    strings = [n.sval for n in names]
    return (strings[-2] if len(strings) > 1 else None), strings[-1]


def _strings(nodes) -> list[str]:
    return [n.sval for n in nodes or ()]


@dataclass
class _IndexConstraint:
    constraint: ast.Constraint
    columns: list[str]  # key columns then INCLUDE columns, as named for the index name
    signature: tuple


class _Reader:
    """Walks the files in order and records their effects, keeping the names taken so far."""

    def __init__(self) -> None:
        self.namer = _Namer()
        self.created: dict[tuple[str, str], str | None] = {}  # existing at this point -> its table

    # each handler adds its effects with ``_add``; ``line`` is the statement's line in its file

    def statement(self, stmt, line: int, notes: list[str], effects: list[Effect]) -> None:
        handler = getattr(self, f"_{type(stmt).__name__}", None)
        if handler is not None:
            for effect in handler(stmt, line, notes, effects) or ():  # simple handlers return theirs
                self._add(effects, effect)
        elif isinstance(stmt, (ast.RenameStmt, ast.AlterObjectSchemaStmt)):
            notes.append(f"line {line}: {type(stmt).__name__.removesuffix('Stmt')} is not modelled")

    def _add(self, effects: list[Effect], effect: Effect) -> None:
        if effect.action == "create":
            if effect.key in self.created:
                return  # IF NOT EXISTS of an object an earlier statement created
            self.created[effect.key] = effect.table
            self._take(effect, True)
        elif effect.action == "drop":
            gone = [effect.key]
            if effect.kind == "table":  # its columns, constraints, indexes and sequences go with it
                gone += [k for k, table in self.created.items() if table == effect.name]
            for key in gone:
                if key in self.created:
                    self._take(Effect("drop", *key, effect.line), False)
                    del self.created[key]
        effects.append(effect)

    def _take(self, effect: Effect, taken: bool) -> None:
        if effect.kind in ("table", "index", "sequence", "view"):
            names, name = self.namer.relations, effect.name
        elif effect.kind == "constraint":
            names, name = self.namer.constraints, effect.name.split(".", 1)[1]
        else:
            return
        if taken:
            names.add(name)
        else:
            names.discard(name)

    # CREATE EXTENSION / TYPE ... AS ENUM / SEQUENCE / VIEW / FUNCTION / TRIGGER

    def _CreateExtensionStmt(self, stmt, line, notes, effects):
        return [Effect("create", "extension", stmt.extname, line)]

    def _CreateEnumStmt(self, stmt, line, notes, effects):
        schema, name = _qualified(stmt.typeName)
        return [Effect("create", "enum", name, line)] if _ours(schema) else []

    def _AlterEnumStmt(self, stmt, line, notes, effects):
        schema, name = _qualified(stmt.typeName)
        return [Effect("alter", "enum", name, line)] if _ours(schema) else []

    def _CreateSeqStmt(self, stmt, line, notes, effects):
        if not _ours(stmt.sequence.schemaname):
            return []
        return [Effect("create", "sequence", truncate_identifier(stmt.sequence.relname), line)]

    def _ViewStmt(self, stmt, line, notes, effects):
        if not _ours(stmt.view.schemaname):
            return []
        return [Effect("create", "view", truncate_identifier(stmt.view.relname), line)]

    def _CreateTableAsStmt(self, stmt, line, notes, effects):
        rel = stmt.into.rel
        if not _ours(rel.schemaname):
            return []
        kind = "view" if stmt.objtype == ObjectType.OBJECT_MATVIEW else "table"
        return [Effect("create", kind, truncate_identifier(rel.relname), line, opaque=kind == "table")]

    def _CreateFunctionStmt(self, stmt, line, notes, effects):
        schema, name = _qualified(stmt.funcname)
        return [Effect("create", "function", f"{name}(", line)] if _ours(schema) else []

    def _CreateTrigStmt(self, stmt, line, notes, effects):
        if not _ours(stmt.relation.schemaname):
            return []
        table = stmt.relation.relname
        return [Effect("create", "trigger", f"{table}.{stmt.trigname}", line, table=table)]

    # DO blocks: the statements the PL/pgSQL body runs

    def _DoStmt(self, stmt, line, notes, effects):
        options = {a.defname: a.arg for a in stmt.args}
        language = options.get("language")
        if language is not None and language.sval != "plpgsql":
            notes.append(f"line {line}: DO block in {language.sval} is not read")
            return []
        body = options["as"].sval
        tag = "leaddb"
        while f"${tag}$" in body:
            tag += "_"
        wrapper = f"CREATE FUNCTION leaddb_do() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}$"
        try:
            tree = json.loads(parse_plpgsql_json(wrapper))
        except ParseError as exc:
            notes.append(f"line {line}: DO block not readable: {exc.args[0]}")
            return []
        for sql, offset in _plpgsql_statements(tree):
            try:
                inner = pglast.parse_sql(sql)
            except ParseError:
                notes.append(f"line {line + offset}: SQL inside the DO block not readable")
                continue
            for raw in inner:
                self.statement(raw.stmt, line + offset, notes, effects)
        return None

    # CREATE INDEX

    def _IndexStmt(self, stmt, line, notes, effects):
        if not _ours(stmt.relation.schemaname):
            return []
        table = stmt.relation.relname
        if stmt.idxname:
            name = truncate_identifier(stmt.idxname)
        else:
            columns = _index_column_names(
                [_index_elem_name(e) for e in (stmt.indexParams or ()) + (stmt.indexIncludingParams or ())]
            )
            name = self.namer.relation(table, _name_addition(columns), "idx", isconstraint=False)
        return [Effect("create", "index", name, line, table=table)]

    # CREATE TABLE and ALTER TABLE

    def _CreateStmt(self, stmt, line, notes, effects):
        rel = stmt.relation
        if not _ours(rel.schemaname):
            return []
        table = truncate_identifier(rel.relname)
        if ("table", table) in self.created:
            return []  # CREATE TABLE IF NOT EXISTS of a table an earlier statement created
        elements = stmt.tableElts or ()
        opaque = bool(
            stmt.inhRelations
            or stmt.partbound
            or stmt.ofTypename
            or any(isinstance(e, ast.TableLikeClause) for e in elements)
        )
        columns = [e for e in elements if isinstance(e, ast.ColumnDef)]
        constraints = [(None, e) for e in elements if isinstance(e, ast.Constraint)]
        # transform phase: sequences of serial and identity columns, in column order
        for column in columns:
            self._sequence_of(effects, table, column, line)
        self._add(effects, Effect("create", "table", table, line, opaque=opaque))
        for column in columns:
            self._add(effects, Effect("create", "column", f"{table}.{column.colname}", line, table=table))
        ordered = [(c, con) for c in columns for con in (c.constraints or ())]
        # element order: a column's constraints come where the column is
        ordered = _in_element_order(elements, ordered, constraints)
        self._constraints(effects, table, ordered, line)
        return None

    def _sequence_of(self, effects, table, column: ast.ColumnDef, line) -> None:
        type_names = _strings(column.typeName.names) if column.typeName else []
        serial = len(type_names) == 1 and type_names[0] in _SERIAL_TYPES
        identity = next(
            (c for c in column.constraints or () if c.contype == ConstrType.CONSTR_IDENTITY), None
        )
        if not (serial or identity):
            return
        explicit = None
        for option in (identity.options if identity else None) or ():
            if option.defname == "sequence_name":
                _, explicit = _qualified(option.arg)
        name = (
            truncate_identifier(explicit)
            if explicit
            else self.namer.relation(table, column.colname, "seq", isconstraint=False)
        )
        self._add(effects, Effect("create", "sequence", name, line, table=table))

    def _constraints(self, effects, table, ordered, line) -> None:
        """CHECKs as the table is created, then the indexes (primary key first), then FKs."""
        checks, indexes, foreign = [], [], []
        for column, con in ordered:
            if con.contype == ConstrType.CONSTR_CHECK:
                checks.append(con)
            elif con.contype in (
                ConstrType.CONSTR_PRIMARY,
                ConstrType.CONSTR_UNIQUE,
                ConstrType.CONSTR_EXCLUSION,
            ):
                indexes.append(_index_constraint(con, column))
            elif con.contype == ConstrType.CONSTR_FOREIGN:
                foreign.append((con, [column.colname] if column else _strings(con.fk_attrs)))
        for con in checks:
            if con.conname:
                name = truncate_identifier(con.conname)
            else:
                refs = _column_refs(con.raw_expr)
                name = self.namer.constraint(table, next(iter(refs)) if len(refs) == 1 else None, "check")
            self._add(effects, Effect("create", "constraint", f"{table}.{name}", line, table=table))
        for index in _dedupe_index_constraints(indexes):
            con = index.constraint
            if con.conname:
                name = truncate_identifier(con.conname)
            elif con.contype == ConstrType.CONSTR_PRIMARY:
                name = self.namer.relation(table, None, "pkey", isconstraint=True)
            else:
                label = "excl" if con.contype == ConstrType.CONSTR_EXCLUSION else "key"
                columns = _name_addition(_index_column_names(index.columns))
                name = self.namer.relation(table, columns, label, isconstraint=True)
            self._add(effects, Effect("create", "constraint", f"{table}.{name}", line, table=table))
            self._add(effects, Effect("create", "index", name, line, table=table))
        for con, columns in foreign:
            name = (
                truncate_identifier(con.conname)
                if con.conname
                else self.namer.constraint(table, _name_addition(columns), "fkey")
            )
            self._add(effects, Effect("create", "constraint", f"{table}.{name}", line, table=table))

    def _AlterTableStmt(self, stmt, line, notes, effects):
        rel = stmt.relation
        if stmt.objtype != ObjectType.OBJECT_TABLE or not _ours(rel.schemaname):
            return []
        table = rel.relname
        for cmd in stmt.cmds or ():
            subtype = cmd.subtype
            if subtype == AlterTableType.AT_AddColumn:
                column = cmd.def_
                if (("column", f"{table}.{column.colname}")) in self.created:
                    continue  # ADD COLUMN IF NOT EXISTS of a column that exists
                self._sequence_of(effects, table, column, line)
                self._add(effects, Effect("create", "column", f"{table}.{column.colname}", line, table=table))
                self._constraints(effects, table, [(column, c) for c in column.constraints or ()], line)
            elif subtype == AlterTableType.AT_AddConstraint:
                self._constraints(effects, table, [(None, cmd.def_)], line)
            elif subtype == AlterTableType.AT_AddIdentity:
                column = ast.ColumnDef(colname=cmd.name, constraints=(cmd.def_,))
                self._sequence_of(effects, table, column, line)
                self._add(effects, Effect("alter", "column", f"{table}.{cmd.name}", line, table=table))
            elif subtype == AlterTableType.AT_DropColumn:
                self._add(effects, Effect("drop", "column", f"{table}.{cmd.name}", line, table=table))
                notes.append(
                    f"line {line}: DROP COLUMN {table}.{cmd.name} also drops the constraints and "
                    "indexes on it; those are not modelled"
                )
            elif subtype == AlterTableType.AT_DropConstraint:
                self._add(effects, Effect("drop", "constraint", f"{table}.{cmd.name}", line, table=table))
                if ("index", cmd.name) in self.created:
                    self._add(effects, Effect("drop", "index", cmd.name, line, table=table))
            elif cmd.name and ("column", f"{table}.{cmd.name}") in self.created:
                # SET DEFAULT, TYPE, SET NOT NULL, ...: the column's definition changes
                self._add(effects, Effect("alter", "column", f"{table}.{cmd.name}", line, table=table))
            elif subtype not in (AlterTableType.AT_ChangeOwner, AlterTableType.AT_ReplicaIdentity):
                notes.append(f"line {line}: ALTER TABLE {table} {subtype.name} is not modelled")
        return None

    # DROP

    _DROPPED = {
        ObjectType.OBJECT_TABLE: "table",
        ObjectType.OBJECT_INDEX: "index",
        ObjectType.OBJECT_SEQUENCE: "sequence",
        ObjectType.OBJECT_VIEW: "view",
        ObjectType.OBJECT_MATVIEW: "view",
        ObjectType.OBJECT_TYPE: "enum",
        ObjectType.OBJECT_EXTENSION: "extension",
        ObjectType.OBJECT_FUNCTION: "function",
        ObjectType.OBJECT_TRIGGER: "trigger",
    }

    def _DropStmt(self, stmt, line, notes, effects):
        kind = self._DROPPED.get(stmt.removeType)
        if kind is None:
            return []
        for obj in stmt.objects or ():
            if kind == "extension":
                schema, name = None, obj.sval
            elif kind == "enum":
                schema, name = _qualified(obj.names)
            elif kind == "function":
                schema, name = _qualified(obj.objname)
                name += "("
            elif kind == "trigger":  # DROP TRIGGER name ON [schema.]table: ([schema,] table, name)
                names = _strings(obj)
                schema, name = (names[-3] if len(names) > 2 else None), f"{names[-2]}.{names[-1]}"
            else:
                schema, name = _qualified(obj)
            if not _ours(schema):
                continue
            self._add(effects, Effect("drop", kind, name, line))
        return None


def _in_element_order(elements, column_constraints, table_constraints):
    """Column and table constraints in the order their elements appear in CREATE TABLE."""
    by_element: dict[int, list] = {}
    for column, con in column_constraints:
        by_element.setdefault(id(column), []).append((column, con))
    ordered = []
    for element in elements:
        if isinstance(element, ast.ColumnDef):
            ordered += by_element.get(id(element), [])
        elif isinstance(element, ast.Constraint):
            ordered.append((None, element))
    return ordered


def _index_constraint(con: ast.Constraint, column: ast.ColumnDef | None) -> _IndexConstraint:
    if con.contype == ConstrType.CONSTR_EXCLUSION:
        elems = [pair[0] for pair in con.exclusions or ()]
        key_names = [_index_elem_name(e) for e in elems]
        operators = tuple(tuple(_strings(pair[1])) for pair in con.exclusions or ())
    else:
        key_names = [column.colname] if column else _strings(con.keys)
        operators = ()
    include = _strings(con.including)
    signature = (
        con.contype,  # not compared: PRIMARY KEY and UNIQUE on the same columns fold into one index
        tuple(key_names),
        tuple(include),
        operators,
        con.access_method or "btree",
        repr(con.where_clause),
        bool(con.nulls_not_distinct),
        bool(con.deferrable),
        bool(con.initdeferred),
    )
    return _IndexConstraint(con, key_names + include, signature)


def _dedupe_index_constraints(indexes: list[_IndexConstraint]) -> list[_IndexConstraint]:
    """transformIndexConstraints: the primary key first; an index constraint that repeats an
    earlier one on the same columns is folded into it (``UNIQUE PRIMARY KEY``)."""
    primary = [i for i in indexes if i.constraint.contype == ConstrType.CONSTR_PRIMARY][:1]
    final: list[_IndexConstraint] = list(primary)
    names: dict[int, str | None] = {id(i): i.constraint.conname for i in final}
    for index in indexes:
        if primary and index is primary[0]:
            continue
        # the primary key and a UNIQUE on its columns are one index too: compare all but the kind
        prior = next((p for p in final if p.signature[1:] == index.signature[1:]), None)
        if prior is not None:
            if names[id(prior)] is None:
                names[id(prior)] = index.constraint.conname
            continue
        final.append(index)
        names[id(index)] = index.constraint.conname
    for index in final:
        index.constraint = _renamed(index.constraint, names[id(index)])
    return final


def _renamed(con: ast.Constraint, name: str | None) -> ast.Constraint:
    if con.conname == name:
        return con
    copy = ast.Constraint(**{attr: getattr(con, attr) for attr in con})
    copy.conname = name
    return copy


def _plpgsql_statements(tree) -> Iterable[tuple[str, int]]:
    """The SQL a PL/pgSQL body runs: each statement's text and its line offset in the body."""

    def walk(node, lineno: int):
        if isinstance(node, dict):
            lineno = node.get("lineno", lineno)
            if "PLpgSQL_stmt_execsql" in node:
                inner = node["PLpgSQL_stmt_execsql"]
                yield inner["sqlstmt"]["PLpgSQL_expr"]["query"], inner.get("lineno", lineno)
                return
            if "PLpgSQL_stmt_dynexecute" in node:
                inner = node["PLpgSQL_stmt_dynexecute"]
                text = _constant_string(inner["query"]["PLpgSQL_expr"]["query"])
                if text is not None:
                    yield text, inner.get("lineno", lineno)
                return
            for value in node.values():
                yield from walk(value, lineno)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value, lineno)

    for sql, lineno in walk(tree, 1):
        # the body's line 1 is the line of the opening dollar quote, on the DO statement's line
        yield sql, max(lineno - 1, 0)


def _constant_string(expression: str) -> str | None:
    """The value of an ``EXECUTE 'literal'`` argument (a constant); None for anything computed."""
    try:
        target = pglast.parse_sql(f"SELECT {expression}")[0].stmt.targetList[0].val
    except (ParseError, AttributeError, IndexError):
        return None
    if isinstance(target, ast.A_Const) and isinstance(target.val, ast.String):
        return target.val.sval
    return None


def read(migrations: Sequence[Migration]) -> list[FileEffects]:
    """Every file's effects, in order; names PostgreSQL chooses depend on what came before."""
    reader = _Reader()
    result = []
    for migration in migrations:
        file = FileEffects(migration)
        for statement in migration.statements:
            for raw in pglast.parse_sql(statement.sql):
                reader.statement(raw.stmt, statement.line, file.notes, file.effects)
        result.append(file)
    return result
