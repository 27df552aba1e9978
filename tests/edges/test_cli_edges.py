"""Bad input to the ``actorq`` command, case by case: one line, the right status, no harm.

Every case asserts the message, the exit status (2: the command line is malformed; 1: the
request failed), that no traceback is printed and nothing goes to stdout, and that nothing
was written: the seeded store's counts and queue configs are unchanged, and a missing store
is still missing. Test ids start with the kind of bad input, so cases can be counted by kind.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest

from .conftest import Store, assert_one_line_error, cli

BIG = str(10**30)


@attrs.frozen
class Case:
    kind: str  # the kind of bad input: the first part of the test id
    name: str
    args: tuple[str, ...]  # {url}, {app}, {tmp} and the module keys of APP_MODULES are filled in
    code: int
    message: str

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


def case(kind: str, name: str, args: str | list[str], code: int, message: str) -> Case:
    return Case(kind, name, tuple(args.split() if isinstance(args, str) else args), code, message)


W = "worker {good}:app -t {url}"  # a worker command line that would run, but for one option
E = "enqueue k -t {url}"

# Cases that reach a real, seeded store (run on SQLite and PostgreSQL): it must not change.
STORE_CASES = [
    # --- bad option values (click types: usage errors before anything connects)
    case("bad-option", "lease-ttl-zero", f"{W} --lease-ttl 0", 2, "'--lease-ttl'"),
    case("bad-option", "lease-ttl-negative", f"{W} --lease-ttl -1", 2, "'--lease-ttl'"),
    case("bad-option", "lease-ttl-word", f"{W} --lease-ttl soon", 2, "invalid duration"),
    case("bad-option", "poll-interval-zero", f"{W} --poll-interval 0", 2, "'--poll-interval'"),
    case("bad-option", "concurrency-negative", f"{W} -c -3", 2, "'-c'"),
    case("bad-option", "concurrency-zero", f"{W} -c 0", 2, "x>=1"),
    case("bad-option", "batch-size-zero", f"{W} --batch-size 0", 2, "'--batch-size'"),
    case("bad-option", "reaper-interval-zero", f"{W} --reaper-interval 0s", 2, "reaper"),
    case("bad-option", "leader-ttl-zero", f"{W} --leader-ttl 0ms", 2, "'--leader-ttl'"),
    case("bad-option", "drain-timeout-negative", f"{W} --drain-timeout -1", 2, "drain"),
    case("bad-option", "loop-unknown", f"{W} --loop tokio", 2, "'tokio' is not one of"),
    case("bad-option", "count-zero", f"{E} --count 0", 2, "'--count'"),
    case("bad-option", "count-huge", f"{E} --count 1000001", 2, "'--count'"),
    case("bad-option", "max-attempts-zero", f"{E} --max-attempts 0", 2, "'--max-attempts'"),
    case("bad-option", "delay-negative", f"{E} --delay -5", 2, "'--delay'"),
    case("bad-option", "max-payload-zero", f"{E} --max-payload-bytes 0", 2, "max-payload"),
    case("bad-option", "queue-concurrency-negative",
         "queue default -t {url} --concurrency -5", 2, "'--concurrency'"),
    case("bad-option", "queue-retention-negative",
         "queue default -t {url} --retention -1", 2, "'--retention'"),
    case("bad-option", "queue-global-concurrency-negative",
         "queue default -t {url} --global-concurrency -1", 2, "'--global-concurrency'"),
    case("bad-option", "queue-global-concurrency-both",
         "queue default -t {url} --global-concurrency 1 --no-global-concurrency", 2, "not both"),
    case("huge-integer", "queue-global-concurrency",
         f"queue default -t {{url}} --global-concurrency {2**31}", 2, "'--global-concurrency'"),
    case("bad-option", "limit-concurrency-negative",
         "limits set k --concurrency -1 -t {url}", 2, "'--concurrency'"),
    case("bad-option", "limit-concurrency-word",
         "limits set k --concurrency many -t {url}", 2, "'--concurrency'"),
    case("bad-option", "limit-neither", "limits set k -t {url}", 2, "--remove"),
    case("bad-option", "limit-both", "limits set k --concurrency 1 --remove -t {url}",
         2, "--remove"),
    case("bad-option", "limit-key-missing", "limits set --remove -t {url}", 2,
         "missing argument 'KEY'"),
    case("huge-integer", "limit-concurrency",
         f"limits set k --concurrency {2**31} -t {{url}}", 2, "'--concurrency'"),
    case("bad-option", "limit-rate-zero", "limits set k --rate 0 --per 1 -t {url}", 2,
         "'--rate'"),
    case("huge-integer", "limit-rate", f"limits set k --rate {2**31} --per 1 -t {{url}}", 2,
         "'--rate'"),
    case("bad-option", "limit-rate-without-per", "limits set k --rate 5 -t {url}", 2,
         "go together"),
    case("bad-option", "limit-per-without-rate", "limits set k --per 60 -t {url}", 2,
         "go together"),
    case("bad-option", "limit-per-zero", "limits set k --rate 5 --per 0 -t {url}", 2,
         "'--per'"),
    case("bad-option", "limit-per-too-long", "limits set k --rate 5 --per 400d -t {url}", 2,
         "longer than"),
    case("bad-option", "limit-per-word", "limits set k --rate 5 --per often -t {url}", 2,
         "'--per'"),
    case("bad-option", "limit-rate-and-no-rate",
         "limits set k --rate 5 --per 1 --no-rate -t {url}", 2, "not both"),
    case("bad-option", "limit-concurrency-and-no-concurrency",
         "limits set k --concurrency 1 --no-concurrency -t {url}", 2, "not both"),
    case("bad-option", "limit-rate-and-remove", "limits set k --no-rate --remove -t {url}", 2,
         "--remove"),
    case("bad-name", "limit-key-empty", ["limits", "set", "", "--remove", "-t", "{url}"], 2,
         "key must be"),
    case("bad-name", "limit-key-nul", ["limits", "set", "a\x00b", "--remove", "-t", "{url}"],
         2, "key must not"),
    case("bad-name", "limit-key-too-long",
         ["limits", "set", "k" * 256, "--concurrency", "1", "-t", "{url}"], 2, "key must be"),
    case("bad-option", "cancel-zero", "jobs cancel 0 -t {url}", 2, "IDS"),
    case("bad-option", "cancel-word", "jobs cancel seven -t {url}", 2, "IDS"),
    case("bad-option", "jobs-list-limit-zero", "jobs list --limit 0 -t {url}", 2, "'--limit'"),
    case("bad-option", "jobs-list-limit-huge", "jobs list --limit 10001 -t {url}", 2, "'--limit'"),
    case("bad-option", "jobs-list-before-zero", "jobs list --before 0 -t {url}", 2, "'--before'"),
    case("bad-option", "jobs-state-unknown", "jobs list --state nope -t {url}", 2, "'--state'"),
    case("bad-option", "jobs-since-word", "jobs retry --since soon -t {url}", 2, "'--since'"),
    case("bad-option", "jobs-until-date", "jobs delete --until 2026-13-45 -t {url}", 2,
         "'--until'"),
    case("bad-option", "jobs-since-after-until",
         "jobs list --since 1h --until 2h -t {url}", 2, "--since is not before --until"),
    case("bad-option", "jobs-error-empty", ["jobs", "list", "--error", "", "-t", "{url}"], 2,
         "'--error'"),
    case("bad-option", "jobs-error-control", ["jobs", "list", "--error", "a\x01b", "-t", "{url}"],
         2, "control characters"),
    case("bad-option", "jobs-reason-empty",
         ["jobs", "discard", "1", "--reason", "", "-t", "{url}"], 2, "'--reason'"),
    case("bad-option", "jobs-batch-zero", "jobs retry --state dead --batch-size 0 -t {url}", 2,
         "'--batch-size'"),
    case("bad-option", "jobs-limit-zero", "jobs cancel --state available --limit 0 -t {url}", 2,
         "'--limit'"),
    case("bad-option", "jobs-no-filter", "jobs retry -t {url}", 2, "no job ids and no filter"),
    case("bad-option", "jobs-delete-no-filter", "jobs delete -t {url}", 2, "add --all"),
    case("bad-option", "jobs-show-zero", "jobs show 0 -t {url}", 2, "JOB_ID"),
    case("bad-option", "jobs-show-word", "jobs show seven -t {url}", 2, "JOB_ID"),
    case("bad-option", "jobs-unknown-command", "jobs requeue 1 -t {url}", 2, "no such command"),
    case("bad-option", "unknown-option", "status -t {url} --colour", 2, "no such option"),
    case("bad-option", "missing-kind", "enqueue -t {url}", 2, "missing argument 'KIND'"),
    case("bad-option", "priority-word", f"{E} --priority high", 2, "'--priority'"),
    case("bad-option", "value-missing", f"{E} --delay", 2, '"actorq enqueue -h"'),
    case("bad-option", "concurrency-missing", "queue default -t {url} --concurrency",
         2, "requires an argument"),
    case("bad-option", "node-heartbeat-zero", f"{W} --node-heartbeat 0", 2, "'--node-heartbeat'"),
    case("bad-option", "stats-interval-word", f"{W} --stats-interval often", 2,
         "invalid duration"),
    case("non-finite", "node-heartbeat-inf", f"{W} --node-heartbeat inf", 2, "heartbeat"),
    case("bad-option", "stats-minutes-zero", "stats -t {url} --minutes 0", 2, "'--minutes'"),
    case("bad-option", "stats-minutes-huge", f"stats -t {{url}} -m {BIG}", 2, "'-m'"),
    case("bad-option", "stats-minutes-word", "stats -t {url} -m ten", 2, "'-m'"),
    case("bad-option", "nodes-extra-argument", "nodes extra -t {url}", 2, "unexpected extra"),
    case("bad-option", "schedules-missing-app", "schedules -t {url}", 2,
         "missing argument 'APP_PATH'"),
    # --- non-finite numbers
    case("non-finite", "lease-ttl-inf", f"{W} --lease-ttl inf", 2, "'--lease-ttl'"),
    case("non-finite", "lease-ttl-nan", f"{W} --lease-ttl nan", 2, "'--lease-ttl'"),
    case("non-finite", "delay-inf", f"{E} --delay inf", 2, "'--delay'"),
    case("non-finite", "delay-nan", f"{E} --delay nan", 2, "'--delay'"),
    case("non-finite", "retention-inf", "queue default -t {url} --retention inf", 2, "retention"),
    case("non-finite", "payload-nan", ["enqueue", "k", "NaN", "-t", "{url}"], 2, "NaN"),
    case("non-finite", "payload-infinity",
         ["enqueue", "k", '{"x": Infinity}', "-t", "{url}"], 2, "Infinity"),
    case("non-finite", "payload-minus-infinity",
         ["enqueue", "k", "[-Infinity]", "-t", "{url}"], 2, "-Infinity"),
    # --- integers beyond what a store keeps
    case("huge-integer", "priority", f"{E} --priority {BIG}", 2, "priority"),
    case("huge-integer", "priority-int32", f"{E} --priority {2**31}", 2, "priority"),
    case("huge-integer", "max-attempts", f"{E} --max-attempts {2**40}", 2, "max_attempts"),
    case("huge-integer", "cancel-id", f"jobs cancel {2**64} -t {{url}}", 2, "IDS"),
    case("huge-integer", "jobs-show-id", f"jobs show {2**64} -t {{url}}", 2, "JOB_ID"),
    case("huge-integer", "jobs-list-id", f"jobs list --id {2**63} -t {{url}}", 2, "'--id'"),
    case("huge-integer", "count", f"{E} --count {BIG}", 2, "'--count'"),
    case("huge-integer", "worker-concurrency", f"{W} -c {BIG}", 2, "concurrency"),
    case("huge-integer", "queue-concurrency",
         f"queue default -t {{url}} --concurrency {BIG}", 2, "concurrency"),
    case("huge-integer", "batch-size", f"{W} --batch-size {BIG}", 2, "batch_size"),
    case("huge-integer", "payload-digits",
         ["enqueue", "k", "9" * 5000, "-t", "{url}"], 2, "payload is not JSON"),
    # --- bad names
    case("bad-name", "kind-punctuation", ["enqueue", "bad kind!", "-t", "{url}"], 2,
         "invalid kind name"),
    case("bad-name", "kind-too-long", ["enqueue", "k" * 129, "-t", "{url}"], 2,
         "invalid kind name"),
    case("bad-name", "kind-newline", ["enqueue", "kind\n", "-t", "{url}"], 2,
         "invalid kind name"),
    case("bad-name", "queue-space", ["enqueue", "k", "-q", "a b", "-t", "{url}"], 2,
         "invalid queue name"),
    case("bad-name", "queue-sql", ["enqueue", "k", "-q", "x'; DROP TABLE jobs;--", "-t",
                                   "{url}"], 2, "invalid queue name"),
    case("bad-name", "queue-empty", ["enqueue", "k", "-q", "", "-t", "{url}"], 2,
         "invalid queue name"),
    case("bad-name", "queue-too-long", ["enqueue", "k", "-q", "q" * 200, "-t", "{url}"], 2,
         "invalid queue name"),
    case("bad-name", "queue-non-ascii", ["enqueue", "k", "-q", "café", "-t", "{url}"], 2,
         "invalid queue name"),
    case("bad-name", "worker-queue", ["worker", "{good}:app", "-q", "a b", "-t", "{url}"], 2,
         "invalid queue name"),
    case("bad-name", "queue-command", ["queue", "a b", "-t", "{url}"], 2, "invalid queue name"),
    case("bad-name", "stats-queue", ["stats", "-q", "a b", "-t", "{url}"], 2,
         "invalid queue name"),
    case("bad-name", "dedupe-key-nul", ["enqueue", "k", "--dedupe-key", "a\x00b", "-t",
                                        "{url}"], 2, "dedupe"),
    case("bad-name", "dedupe-key-too-long", ["enqueue", "k", "--dedupe-key", "d" * 300, "-t",
                                             "{url}"], 2, "dedupe"),
    # --- bad payloads
    case("bad-payload", "not-json", ["enqueue", "k", "{not json", "-t", "{url}"], 2,
         "payload is not JSON"),
    case("bad-payload", "empty", ["enqueue", "k", "", "-t", "{url}"], 2, "payload is not JSON"),
    case("bad-payload", "missing-file", ["enqueue", "k", "@{tmp}/nope.json", "-t", "{url}"], 2,
         "cannot read the payload file"),
    case("bad-payload", "missing-payload-file",
         ["enqueue", "k", "--payload-file", "{tmp}/nope.json", "-t", "{url}"], 2,
         "cannot read the payload file"),
    case("bad-payload", "directory", ["enqueue", "k", "@{tmp}", "-t", "{url}"], 2,
         "cannot read the payload file"),
    case("bad-payload", "given-twice",
         ["enqueue", "k", "{}", "--payload-file", "{tmp}/p.json", "-t", "{url}"], 2,
         "both PAYLOAD and --payload-file"),
    case("bad-payload", "too-large", ["enqueue", "k", "@{tmp}/big.json", "-t", "{url}"], 2,
         "--max-payload-bytes"),
    case("bad-payload", "signal-not-json", ["signal", "k", "{not json", "-t", "{url}"], 2,
         "payload is not JSON"),
    case("bad-payload", "signal-too-large", ["signal", "k", '"' + "x" * 70_000 + '"', "-t",
                                             "{url}"], 2, "over the limit of 65536"),
    case("bad-name", "signal-key-space", ["signal", "a b", "-t", "{url}"], 2,
         "invalid event key"),
    case("bad-name", "signal-key-too-long", ["signal", "k" * 129, "-t", "{url}"], 2,
         "invalid event key"),
    case("bad-option", "signal-missing-key", "signal -t {url}", 2, "missing argument 'KEY'"),
    case("bad-payload", "too-deep", ["enqueue", "k", "[" * 100_000, "-t", "{url}"], 2,
         "payload is not JSON"),
    case("bad-payload", "nul-in-string", ["enqueue", "k", '"a\\u0000b"', "-t", "{url}"], 2,
         "NUL"),
    case("bad-payload", "not-utf8", ["enqueue", "k", "@{tmp}/latin1.json", "-t", "{url}"], 2,
         "cannot read the payload file"),
    case("bad-payload", "wrong-field-type",
         ["enqueue", "--app", "{good}:app", "email.welcome", '{"user_id": "x"}', "-t", "{url}"],
         2, "does not fit Welcome"),
    case("bad-payload", "extra-field",
         ["enqueue", "--app", "{good}:app", "email.welcome", '{"user_id": 1, "x": 2}', "-t",
          "{url}"], 2, "does not fit Welcome"),
    case("bad-payload", "missing-payload",
         ["enqueue", "--app", "{good}:app", "email.welcome", "-t", "{url}"], 2, "does not fit"),
    case("bad-payload", "string-for-int",
         ["enqueue", "--app", "{good}:app", "report.build", '"seven"', "-t", "{url}"], 2,
         "does not fit int"),
    # --- unknown kinds (with an App to know them)
    case("unknown-kind", "typo", "enqueue --app {good}:app email.welcom {} -t {url}", 2,
         "known kinds: email.welcome, report.build"),
    case("unknown-kind", "other-app-kind", "enqueue --app {good}:app k -t {url}", 2,
         "unknown kind 'k'"),
    case("unknown-kind", "not-an-app", "enqueue --app {good}:not_an_app k -t {url}", 2,
         "not an actorq App"),
    # --- bad module paths and modules that fail to import
    case("bad-module", "no-such-module", "worker no.such.module:app -t {url}", 2,
         "cannot import 'no.such.module'"),
    case("bad-module", "no-attribute", "worker {good}:missing -t {url}", 2,
         "has no attribute 'missing'"),
    case("bad-module", "not-an-app", "worker {good}:not_an_app -t {url}", 2,
         "is a int, not an actorq App"),
    case("bad-module", "factory-raises", "worker {good}:broken_factory -t {url}", 1,
         "factory exploded"),
    case("bad-module", "syntax-error", "worker {syntax}:app -t {url}", 1, "SyntaxError"),
    case("bad-module", "name-error", "worker {nameerror}:app -t {url}", 1, "NameError"),
    case("bad-module", "missing-dependency", "worker {baddep}:app -t {url}", 1,
         "No module named 'actorq_no_such_dependency'"),
    case("bad-module", "module-exits", "worker {exits}:app -t {url}", 1, "SystemExit"),
    case("bad-module", "missing-file", "worker {tmp}/nope.py:app -t {url}", 2, "no file"),
    case("bad-module", "empty-module", "worker :app -t {url}", 2, "no module in APP_PATH"),
    case("bad-module", "schedules-no-attribute", "schedules {good}:missing -t {url}", 2,
         "has no attribute 'missing'"),
    case("bad-module", "schedules-not-an-app", "schedules {good}:not_an_app -t {url}", 2,
         "not an actorq App"),
    case("bad-cron", "seven-fields-schedules", "schedules {badcron}:app -t {url}", 1,
         "InvalidCronExpression"),
    case("bad-module", "enqueue-syntax-error", "enqueue --app {syntax}:app k -t {url}", 1,
         "SyntaxError"),
    # --- bad cron expressions, raised while the App module is imported
    case("bad-cron", "seven-fields-worker", "worker {badcron}:app -t {url}", 1,
         "InvalidCronExpression"),
    case("bad-cron", "seven-fields-enqueue", "enqueue --app {badcron}:app tick -t {url}", 1,
         "InvalidCronExpression"),
    # --- memory:// where work would be lost or there is nothing to see
    case("memory-refused", "enqueue", "enqueue k -t memory://", 2, "lost when this command"),
    case("memory-refused", "worker", "worker {good}:app -t memory://", 2, "memory://"),
    case("memory-refused", "status", "status -t memory://", 2, "nothing to show"),
    case("memory-refused", "queue", "queue default -t memory://", 2, "memory://"),
    case("memory-refused", "cancel", "jobs cancel 1 -t memory://", 2, "no jobs there"),
    case("memory-refused", "jobs-list", "jobs list -t memory://", 2, "no jobs there"),
    case("memory-refused", "workflows", "workflows list -t memory://", 2, "no jobs there"),
    case("bad-option", "workflows-limit", "workflows list --limit 0 -t {url}", 2, "limit"),
    case("bad-option", "workflows-name",
         ["workflows", "show", "a\x01", "-t", "{url}"], 2, "WORKFLOW"),
    case("memory-refused", "nodes", "nodes -t memory://", 2, "no nodes there"),
    case("memory-refused", "schedules", "schedules {good}:app -t memory://", 2, "no cron"),
    case("memory-refused", "stats", "stats -t memory://", 2, "no history there"),
    case("memory-refused", "signal", "signal k -t memory://", 2, "lost when this command"),
    # --- well-formed requests that fail
    case("missing-job", "cancel", "jobs cancel 999 -t {url}", 1, "no job has id 999"),
    case("missing-job", "show", "jobs show 999 -t {url}", 1, "no job has id 999"),
    case("missing-job", "retry", "jobs retry 999 -t {url}", 1, "no job has id 999"),
    case("missing-job", "delete", "jobs delete 998 999 -t {url}", 1, "no job has id 998, 999"),
    case("missing-workflow", "show", "workflows show nope -t {url}", 1, "no workflow is named"),
    case("missing-workflow", "cancel", "workflows cancel nope -t {url}", 1, "no workflow"),
]  # fmt: skip


def _fill(args: tuple[str, ...], url: str, apps: dict[str, str], tmp: Path) -> list[str]:
    values = {"url": url, "tmp": str(tmp), **apps}
    filled = []
    for arg in args:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        filled.append(arg)
    return filled


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "p.json").write_text("{}")
    (tmp_path / "big.json").write_text('"' + "x" * 1_100_000 + '"')
    (tmp_path / "latin1.json").write_bytes('"caf\xe9"'.encode("latin-1"))
    return tmp_path


@pytest.mark.parametrize("case", STORE_CASES, ids=lambda c: c.id)
def test_bad_input_changes_nothing(
    case: Case, store: Store, apps: dict[str, str], files: Path
) -> None:
    """The command refuses in one line with its status, and the store holds what it held."""
    before = store.snapshot()
    result = cli(_fill(case.args, store.url, apps, files))
    assert_one_line_error(result, case.code, case.message)
    assert store.snapshot() == before


@pytest.mark.parametrize("case", [c for c in STORE_CASES if c.code == 2], ids=lambda c: c.id)
def test_a_refused_command_line_creates_no_store(
    case: Case, missing_store: Store, apps: dict[str, str], files: Path
) -> None:
    """A usage error is found before connecting: on a URL naming no store, none is created."""
    result = cli(_fill(case.args, missing_store.url, apps, files))
    assert_one_line_error(result, case.code, case.message)
    assert not missing_store.exists()


READ_ONLY_COMMANDS = [
    ("status",),
    ("queue", "default"),
    ("queue", "emails"),
    ("jobs", "cancel", "1"),
    ("jobs", "list"),
    ("jobs", "show", "1"),
    ("jobs", "retry", "--state", "dead"),
    ("jobs", "delete", "--all"),
    ("nodes",),
    ("stats",),
    ("stats", "-q", "emails", "-m", "60"),
    ("limits",),
    ("workflows", "list"),
    ("workflows", "show", "w"),
    ("workflows", "cancel", "w"),
]


@pytest.mark.parametrize("args", READ_ONLY_COMMANDS, ids=lambda a: "missing-store-" + "-".join(a))
def test_read_only_commands_never_create_a_store(
    args: tuple[str, ...], missing_store: Store
) -> None:
    """On a URL naming no store (a new file, a schema typo), nothing is created."""
    result = cli([*args, "-t", missing_store.url])
    assert_one_line_error(result, 1, f"no store at {missing_store.url}")
    assert "actorq migrate" in result.stderr
    assert not missing_store.exists()


BAD_URLS = [
    ("unknown-scheme", "redis://localhost/0", "unsupported transport URL"),
    ("no-scheme", "jobs.db", "unsupported transport URL"),
    ("sqlite-option", "sqlite:///x.db?journal=wal", "journal"),
    ("pool-size-word", "postgresql://u:hunter2@127.0.0.1:5432/test?pool_size=abc", "pool_size"),
    ("pool-size-zero", "postgresql://u:hunter2@127.0.0.1:5432/test?pool_size=0", "pool_size"),
    ("port-out-of-range", "postgresql://u:hunter2@127.0.0.1:99999/test", "port"),
    ("port-word", "postgresql://u:hunter2@127.0.0.1:abc/test", "port"),
    ("unknown-pg-option", "postgresql://u:hunter2@127.0.0.1/test?colour=blue", "colour"),
]


@pytest.mark.parametrize(
    ("name", "url", "message"), BAD_URLS, ids=[f"bad-url-{u[0]}" for u in BAD_URLS]
)
@pytest.mark.parametrize(
    "command", ["status", "enqueue k", "jobs cancel 1", "jobs list", "queue q"]
)
def test_bad_url_is_one_line_without_the_password(
    name: str, url: str, message: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL no backend can serve is a usage error naming the bad part, never the password."""
    monkeypatch.chdir(tmp_path)
    result = cli([*command.split(), "-t", url])
    assert_one_line_error(result, 2, message)
    assert "hunter2" not in result.output
    assert os.listdir(tmp_path) == []


def test_url_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """ACTORQ_TRANSPORT goes through the same check as -t."""
    monkeypatch.setenv("ACTORQ_TRANSPORT", "memory://")
    assert_one_line_error(cli(["enqueue", "k"]), 2, "memory://")


SIM_CASES = [
    ("nodes-zero", ["--nodes", "0"], "'--nodes'"),
    ("workers-negative", ["--workers", "-1"], "'--workers'"),
    ("duration-word", ["--duration", "soon"], "invalid duration"),
    ("duration-inf", ["--duration", "inf"], "invalid duration"),
    ("seeds-backwards", ["--seeds", "9..1"], "runs backwards"),
    ("seeds-word", ["--seeds", "some"], "invalid seeds"),
    ("faults-unknown", ["--faults", "lava"], "unknown fault"),
    ("rates-malformed", ["--rates", "crash"], "invalid rate"),
    ("rates-negative", ["--rates", "crash=-1"], "crash must be a finite number >= 0"),
    ("keep-faults-word", ["--keep-faults", "x"], "invalid fault list"),
    ("backend-unknown", ["--backend", "curio"], "'curio' is not one of"),
]


@pytest.mark.parametrize(
    ("name", "args", "message"), SIM_CASES, ids=[f"bad-option-sim-{c[0]}" for c in SIM_CASES]
)
def test_sim_refuses_bad_options(name: str, args: list[str], message: str) -> None:
    """`actorq sim` answers bad options like every other command."""
    assert_one_line_error(cli(["sim", *args]), 2, message)
