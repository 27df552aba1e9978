"""A FastAPI app that enqueues jobs inside its own database transaction.

``POST /signup`` inserts a user into the app's own ``users`` table and enqueues the welcome
mail on the *same* asyncpg connection, inside the same transaction
(``jobs.app.enqueue(..., connection=conn)``): the job commits with the user or rolls back with
it. A signup refused after the insert (its domain already has too many accounts) leaves neither
a user nor a welcome job behind, and a worker can never mail a user that does not exist.

The app's lifespan runs an actorq node (``Topology(...).run()``) beside the web server, working
the queues in ``Settings.in_process_queues`` (every queue of the App by default). In
production, set ``IN_PROCESS_QUEUES=`` (empty) and run workers as their own processes::

    actorq worker examples.fastapi_app.jobs:app --queue emails

Configuration (environment variables, read by :meth:`Settings.from_env`):

* ``DATABASE_URL``: the app's PostgreSQL database, an asyncpg DSN.
* ``ACTORQ_TRANSPORT``: where jobs live. It must be the same database, so that one
  transaction covers both; the jobs get their own schema (``?schema=actorq``, the default).
  ``actorq worker`` reads the same variable.
* ``IN_PROCESS_QUEUES``: comma-separated queues worked by the web process; unset: all of them.
* ``MAX_USERS_PER_DOMAIN``: the signup rule that shows the rollback (default 100).

Run it with ``uvicorn examples.fastapi_app.app:app`` from the repository's root.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
import attrs
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

import transports
from actors.jobs import Topology

from . import jobs

#: The app's own table; actorq's tables live in their own schema of the same database.
USERS_TABLE = """
CREATE TABLE IF NOT EXISTS users (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


@attrs.frozen(kw_only=True)
class Settings:
    """Where the app's data and its jobs live, and what the web process works itself."""

    database_url: str  # asyncpg DSN of the app's database
    transport_url: str  # actorq URL of the same database, jobs in their own schema
    in_process_queues: tuple[str, ...] | None = None  # None: every queue of the App
    max_users_per_domain: int = 100

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from the environment (see the module docstring)."""
        database_url = os.environ.get("DATABASE_URL", "postgresql://localhost/app")
        queues = os.environ.get("IN_PROCESS_QUEUES")
        return cls(
            database_url=database_url,
            transport_url=os.environ.get(
                "ACTORQ_TRANSPORT", database_url.split("?")[0] + "?schema=actorq"
            ),
            in_process_queues=None if queues is None else tuple(filter(None, queues.split(","))),
            max_users_per_domain=int(os.environ.get("MAX_USERS_PER_DOMAIN", "100")),
        )


class SignupForm(BaseModel):
    """The body of ``POST /signup``."""

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    name: str = Field(min_length=1, max_length=100)


class SignedUp(BaseModel):
    """The answer to a signup: the new user and the welcome job enqueued with it."""

    user_id: int
    welcome_job: int


@attrs.frozen(kw_only=True)
class Resources:
    """What the lifespan opens and the endpoints use."""

    pool: asyncpg.Pool  # the app's own connections
    transport: transports.Transport  # actorq's store


def resources(request: Request) -> Resources:
    """The lifespan's resources, for an endpoint."""
    found: Resources = request.app.state.resources
    return found


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the web app (``settings`` default to :meth:`Settings.from_env`)."""
    config = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        async with (
            transports.connect(config.transport_url) as transport,
            asyncpg.create_pool(config.database_url, min_size=1, max_size=10) as pool,
        ):
            await pool.execute(USERS_TABLE)
            node = Topology.default(jobs.app, transport, queues=config.in_process_queues)
            # The node drains (running jobs finish) before the pool and the store close.
            async with node.run():
                api.state.resources = Resources(pool=pool, transport=transport)
                yield

    api = FastAPI(title="actorq FastAPI recipe", lifespan=lifespan)

    @api.post("/signup", status_code=201)
    async def signup(form: SignupForm, request: Request) -> SignedUp:
        """Create a user and enqueue its welcome mail, both or neither."""
        parts = resources(request)
        domain = form.email.rsplit("@", 1)[1].lower()
        async with parts.pool.acquire() as conn, conn.transaction():
            try:
                user_id: int = await conn.fetchval(
                    "INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id",
                    form.email,
                    form.name,
                )
            except asyncpg.UniqueViolationError:
                raise HTTPException(409, "this address already has an account") from None
            welcome = await jobs.app.enqueue(
                jobs.send_welcome,
                jobs.Welcome(user_id=user_id, address=form.email),
                transport=parts.transport,
                connection=conn,  # in this transaction: commits or rolls back with the user
            )
            # A rule checked after the insert (the count includes this signup). Refusing here
            # raises out of the transaction: the user row and the welcome job roll back.
            accounts: int = await conn.fetchval(
                "SELECT count(*) FROM users WHERE lower(split_part(email, '@', 2)) = $1", domain
            )
            if accounts > config.max_users_per_domain:
                raise HTTPException(409, f"{domain} has reached its number of accounts")
        return SignedUp(user_id=user_id, welcome_job=welcome.job_id)

    return api


app = create_app()
