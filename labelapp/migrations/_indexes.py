"""The step before a concurrent index build (0027, 0028): drop an INVALID index of that name.

A concurrent build cut short (Ctrl-C, a statement timeout) leaves an invalid index behind and the
migration unrecorded: run again, it failed with "relation already exists" until an operator dropped
the index by hand. The migration loader skips modules whose name starts with an underscore, so this is
no migration itself.
"""

from django.db import migrations

_DROP_INVALID = """
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = '{name}' AND NOT i.indisvalid
    ) THEN
        DROP INDEX {name};
    END IF;
END $$;
"""


def drop_invalid_index(name: str) -> migrations.RunSQL:
    """An operation dropping index `name` (a plain identifier) if a build cut short left it invalid."""
    if not name.isidentifier():
        raise ValueError(f"not an index name: {name!r}")
    return migrations.RunSQL(_DROP_INVALID.format(name=name), migrations.RunSQL.noop)
