"""The throw-away PostgreSQL databases of the benchmarks: URLs, and dropping and creating them.

A benchmark never touches the developer's database: it creates its own on the same server (the one
DATABASE_URL names, or the embedded one) and drops it afterwards. DATABASE_URL may name a database that
does not exist yet; CREATE and DROP then go through the server's maintenance database `postgres`.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit


def libpq_url(url: str) -> str:
    """psycopg/libpq want postgresql:// (django-environ also accepts postgres:// and others)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme in {"postgres", "postgresql", "pgsql", "psql"} else url


def with_database(url: str, name: str) -> str:
    """The same server URL with another database name."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(name), parts.query, parts.fragment))


def server_connection(server_url: str):
    """An autocommit connection for CREATE/DROP DATABASE: to the URL's database, else to `postgres`."""
    import psycopg

    try:
        return psycopg.connect(libpq_url(server_url), autocommit=True)
    except psycopg.OperationalError:
        return psycopg.connect(libpq_url(with_database(server_url, "postgres")), autocommit=True)


def recreate_database(server_url: str, name: str, *, create: bool = True) -> None:
    """Drop database `name` on the server (other sessions on it are ended), then create it afresh."""
    with server_connection(server_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
