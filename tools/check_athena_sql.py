#!/usr/bin/env python3
"""Offline syntax check of deploy/athena.sql with sqlglot's Athena dialect
(Hive DDL for CREATE EXTERNAL TABLE, Trino for queries and views).

    python3 -m venv /tmp/sqlglot && /tmp/sqlglot/bin/pip install sqlglot
    /tmp/sqlglot/bin/python tools/check_athena_sql.py [deploy/athena.sql]

It checks that every statement parses, that the table declares the columns
of the metadata document, and that each query round-trips through the
Trino dialect. sqlglot is a lenient parser, not Athena: a statement it
accepts can still be refused by Athena (unknown functions, types); what it
refuses is certainly wrong. Exit status 1 on any failure.
"""

import sys
from pathlib import Path

import sqlglot
from sqlglot import exp

EXPECTED_COLUMNS = {"labels", "labelmodelversion", "imgtag"}


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "deploy/athena.sql")
    text = path.read_text()
    try:
        statements = [s for s in sqlglot.parse(text, read="athena") if s is not None]
    except sqlglot.errors.ParseError as e:
        print(f"{path}: does not parse: {e}")
        return 1
    failures = 0
    kinds = []
    for n, stmt in enumerate(statements, 1):
        kind = stmt.key
        if isinstance(stmt, exp.Create):
            kind = f"create {stmt.args.get('kind', '').lower()}"
        kinds.append(kind)
        if isinstance(stmt, exp.Create) and stmt.args.get("kind") == "TABLE" and stmt.find(exp.Schema):
            cols = {c.name.lower() for c in stmt.find(exp.Schema).expressions if isinstance(c, exp.ColumnDef)}
            if cols and cols != EXPECTED_COLUMNS and "path" not in cols:
                print(f"statement {n}: columns {sorted(cols)}, want {sorted(EXPECTED_COLUMNS)}")
                failures += 1
        if isinstance(stmt, (exp.Select, exp.Union)) or kind == "create view":
            sql = stmt.sql(dialect="trino")
            try:
                sqlglot.parse_one(sql, read="trino")
            except sqlglot.errors.ParseError as e:
                print(f"statement {n} does not round-trip through Trino: {e}")
                failures += 1
    print(f"{path}: {len(statements)} statements parsed: {', '.join(kinds)}")
    if not any(k == "create table" for k in kinds) or not any(k == "create view" for k in kinds):
        print("missing the table or the view")
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
