"""Where a study lives: storage URLs checked and given the declared driver, the storage opened
with heartbeats, and the lock under which a worker takes the study's next trial."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from netspec.errors import UsageError

# The drivers netspec declares (pyproject extras), by database: the first one installed is used.
# SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3 (2.0 mapped it to psycopg2), so the
# URL names the driver explicitly and either installed one serves `postgresql://`.
DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("pymysql",)}
EXTRAS = {"postgresql": "postgres", "mysql": "mysql"}
EXAMPLES = "sqlite:///study.db, postgresql://user:pass@host:5432/db or mysql://user:pass@host/db"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def shown(url: str) -> str:
    """The URL with its password hidden (for messages, logs and trials.json)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot read has no password it can find either
        return url


def normalize(url: str) -> str:
    """`url` with the driver netspec uses for its database named (`postgresql+psycopg://`);
    a URL of no supported database, or whose driver is not installed, is one error."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError.one(
            f"--storage {url!r} is not a database URL", hint=f"e.g. {EXAMPLES}"
        ) from None
    dialect = "postgresql" if parsed.get_backend_name() == "postgres" else parsed.get_backend_name()
    driver = parsed.get_driver_name() if "+" in parsed.drivername else ""
    if dialect == "sqlite":
        return url
    if dialect not in DRIVERS:
        raise UsageError.one(
            f"--storage {shown(url)}: netspec tune stores studies in SQLite, PostgreSQL or "
            f"MySQL, not {dialect!r}",
            hint=f"e.g. {EXAMPLES}",
        )
    known = DRIVERS[dialect]
    if driver and driver not in known:
        return url  # a driver the user chose and installed themselves: SQLAlchemy's to load
    wanted = [driver] if driver and _installed(driver) else []
    pick = next((m for m in [*wanted, *known] if _installed(m)), None)
    if pick is None:
        raise UsageError.one(
            f"--storage {shown(url)}: no {dialect} driver is installed ({' or '.join(known)})",
            hint=f"pip install 'netspec[{EXTRAS[dialect]}]'",
        )
    return parsed.set(drivername=f"{dialect}+{pick}").render_as_string(hide_password=False)


# The databases whose tables this process has made or found, their schema checked. Optuna does
# both on every RDBStorage it opens, and its check runs Alembic's ~60 migration scripts (~0.15 s
# of CPU); a tune command opens its study 4 times, a worker at least once.
_CHECKED: set[str] = set()


def _checked(url: str) -> bool:
    """Whether `url`'s tables were made and checked by this process already, and are there
    still (a SQLite file deleted since is made again)."""
    if url not in _CHECKED:
        return False
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        return bool(database) and Path(database).is_file()
    return True


def open_storage(url: str, heartbeat: int):
    """Optuna's RDBStorage on `url` (already normalized): trials send a heartbeat every
    `heartbeat` seconds and a trial silent for 3 of them is failed (its worker died)."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

    checked = _checked(url)
    kwargs: dict[str, Any] = {"skip_compatibility_check": checked, "skip_table_creation": checked}
    if url.startswith("sqlite"):
        # Several worker processes write one SQLite file: wait for its lock instead of failing.
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        tries = 0
        while True:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = optuna.storages.RDBStorage(
                        url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat, **kwargs
                    )
                _CHECKED.add(url)
                return storage
            except (IntegrityError, ProgrammingError, OperationalError) as exc:
                # Two processes creating Optuna's tables in a new database at the same moment:
                # one wins, the other finds them on its next try. (SQLite says so with an
                # OperationalError "table ... already exists"; other OperationalErrors are real.)
                racing = not isinstance(exc, OperationalError) or "already exists" in str(exc)
                tries += 1
                if not racing or tries == 3:
                    raise
                time.sleep(1)
    except ImportError as exc:  # a driver named in the URL that is not installed
        raise UsageError.one(
            f"--storage {shown(url)}: its database driver is not installed ({exc.name or exc})",
            hint="pip install it, or use postgresql:// with pip install 'netspec[postgres]'",
        ) from None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise UsageError.one(
            f"--storage {shown(url)}: cannot open the study's database: "
            f"{reason[0] if reason else type(exc).__name__}",
            hint="check that the server runs and the host, port, user, password and database "
            "are right; create the database first (PostgreSQL: createdb NAME)",
        ) from None


@contextlib.contextmanager
def study_lock(storage, study: str) -> Iterator[None]:
    """Held while a worker counts the study's trials and takes the next one, so that workers
    and commands sharing the study never take more than --trials between them.

    PostgreSQL: an advisory lock; MySQL: GET_LOCK; SQLite (one machine): a lock file beside
    the database.
    """
    from sqlalchemy import text

    engine = getattr(storage, "_backend", storage).engine  # under Optuna's cache, if any
    name = engine.dialect.name
    key = zlib.crc32(f"netspec tune {study}".encode())
    if name == "sqlite":
        db = engine.url.database
        if not db or db == ":memory:":
            yield
            return
        with open(Path(db).with_name(Path(db).name + ".lock"), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return
    if name not in ("postgresql", "mysql"):
        yield
        return
    with engine.connect() as conn:
        if name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        else:
            conn.execute(text("SELECT GET_LOCK(:k, -1)"), {"k": f"netspec-{key}"})
        try:
            yield
        finally:
            if name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            else:
                conn.execute(text("SELECT RELEASE_LOCK(:k)"), {"k": f"netspec-{key}"})
            conn.commit()
