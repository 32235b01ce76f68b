"""Fuzz the running API with schemathesis against its own OpenAPI schema (`make fuzz`).

Starts gunicorn on a free loopback port (DATABASE_URL / REDIS_URL when set, else a
throwaway SQLite file and process-local caches) with billing on localstripe, and runs
schemathesis with every check (`--checks all`), a fixed seed, a cap on examples per
operation and a hard time limit (FUZZ_TIMEOUT seconds for all runs together):

- ``api``: the examples, coverage and fuzzing phases on every operation but those
  that kill the key they are called with, with the key of an agent registered for it;
- ``rotate``, ``revoke``, ``delete``: the same on POST /v1/keys/rotate, POST
  /v1/keys/revoke and DELETE /v1/me, each with a key of its own (each kills the
  key it is called with);
- ``stateful``: the stateful phase with no key given: sequences of calls follow the
  schema's links, so keys come from POST /v1/register and POST /v1/keys/rotate
  answers and are used as the Bearer key of the calls after them (every check but
  ``ignored_auth``, which takes such a key for a made-up one; the other runs make
  it with their own probes).

Fails on any failed check, any error, any server ERROR log line, and on any auth
warning. Two things the schema states that schemathesis cannot read are configured
from it: an operation marked ``x-any-method`` (/v1/authorize) answers every method
as it answers GET (checked here, method by method, instead of expecting 405); and
the answer to a well-formed request may depend on Stripe (``x-stripe-decides``:
an unknown or declined payment method is 400 or 402, not a 2xx). Prints one
summary line with the number of cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from billing.payments.dev.devstripe import LOCAL_PUBLISHABLE_KEY, LOCAL_SECRET_KEY  # noqa: E402
from billing.payments.dev.localstripe_server import start_subprocess as start_localstripe  # noqa: E402
from billing.payments.dev.localstripe_server import stop_subprocess as stop_localstripe  # noqa: E402
from testing.servers import (  # noqa: E402
    app_environment,
    fresh_database_url,
    manage,
    running_gunicorn,
)

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "100"))
STATEFUL_STEPS = int(os.environ.get("FUZZ_STATEFUL_STEPS", "10"))
HARD_TIMEOUT = int(os.environ.get("FUZZ_TIMEOUT", "180"))
REPORT_DIR = BASE_DIR / "artifacts"
SEED = os.environ.get("FUZZ_SEED", "4242")
ANY_METHOD_PROBES = ("POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")

# (name, phases, extra arguments: the operations it covers..., whether it gets a key)
# The only required header in the schema is Authorization, and missing_required_header
# insists on 401 without it. A retry of a rotation, revocation or deletion presents the
# key that the first attempt killed and gets its first answer back (a replay, not a
# 401), which that check would count as a failure. A missing key is still checked: the
# ignored_auth check sends every keyed operation without one and with a bad one.
NO_MISSING_HEADER_CHECK = ["--exclude-checks", "missing_required_header"]
KEY_KILLERS = [
    ("rotate", ["--include-path", "/v1/keys/rotate"]),
    ("revoke", ["--include-path", "/v1/keys/revoke"]),
    ("delete", ["--include-operation-id", "me_destroy"]),
]
RUNS = [
    (
        "api",
        "examples,coverage,fuzzing",
        [
            *NO_MISSING_HEADER_CHECK,
            "--exclude-path",
            "/v1/keys/rotate",
            "--exclude-path",
            "/v1/keys/revoke",
            "--exclude-operation-id",
            "me_destroy",
        ],
        True,
    ),
    *[
        (name, "examples,coverage,fuzzing", [*NO_MISSING_HEADER_CHECK, *selection], True)
        for name, selection in KEY_KILLERS
    ],
    # schemathesis counts a key taken from a link as "generated" (it expects 401 for
    # it); the api and rotate runs check auth with probes without and with a bad key.
    ("stateful", "stateful", ["--exclude-checks", "ignored_auth"], False),
]


def call(
    base_url: str, method: str, path: str, *, body: dict | None = None, key: str | None = None
) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    return status, json.loads(raw) if raw else {}


def register(base_url: str) -> str:
    status, body = call(
        base_url,
        "POST",
        "/v1/register",
        body={
            "agent_name": f"fuzz-{time.time_ns()}",
            "owner_identifier": "fuzz@example.com",
        },
    )
    assert status == 201, (status, body)
    return body["api_key"]


def write_secret_scanning_keys(tmp_dir: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    path = tmp_dir / "secret_scanning_keys.json"
    path.write_text(
        json.dumps(
            {"public_keys": [{"key_identifier": "fuzz", "key": public_pem, "is_current": True}]}
        )
    )
    return path


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lithtrix-fuzz-") as tmp:
        tmp_dir = Path(tmp)
        overrides = {"DJANGO_LOG_FORMAT": "json", "LITHTRIX_ACCESS_LOG_LEVEL": "WARNING"}
        overrides["DATABASE_URL"] = fresh_database_url(
            os.environ.get("DATABASE_URL"), "fuzz", tmp_dir
        )
        # Fuzzing registers many agents from one IP and calls far more than 60 times a
        # minute with one key: limits high enough that operations are exercised, not
        # only refused (429 and 402 answers are still checked against the schema).
        overrides["LITHTRIX_REGISTER_RATE"] = "100000/m"
        overrides["LITHTRIX_FREE_RATE"] = "100000/m"
        # The fuzzer sends thousands of made-up keys from one IP; the per-IP limit on
        # failed authentications (tested in keys/tests) would answer them 429 before
        # the operations are exercised.
        overrides["LITHTRIX_AUTH_FAILURE_RATE"] = "100000/m"
        workers = 2
        if not os.environ.get("REDIS_URL"):
            # Process-local rate-limit counters: one process, as the settings require.
            overrides["LITHTRIX_SINGLE_PROCESS"] = "on"
            workers = 1
        # Billing against a local Stripe-compatible server (as `make run` does), so
        # /v1/billing/* answer as a configured deployment does rather than 503.
        localstripe, api_base = start_localstripe()
        overrides.update(
            STRIPE_SECRET_KEY=LOCAL_SECRET_KEY,
            STRIPE_PUBLISHABLE_KEY=LOCAL_PUBLISHABLE_KEY,
            STRIPE_API_BASE=api_base,
        )
        # POST /v1/keys/leaked (GitHub's, not in the schema) verifies against a local
        # public key list: nothing here may reach GitHub (the machine may be offline).
        overrides["LITHTRIX_SECRET_SCANNING_KEYS_FILE"] = str(write_secret_scanning_keys(tmp_dir))
        env = app_environment(overrides)
        try:
            manage("migrate", "--noinput", "-v0", env=env)
            manage("billing_localstripe_setup", env=env)
            log_path = tmp_dir / "gunicorn.log"
            with running_gunicorn(workers=workers, env=env, log_path=log_path) as server:
                return fuzz(server, tmp_dir)
        finally:
            stop_localstripe(localstripe)


def fuzz(server, tmp_dir: Path) -> int:
    started = time.monotonic()
    schema = call(server.url, "GET", "/v1/openapi.json")[1]
    config = tmp_dir / "schemathesis.toml"
    config.write_text(schemathesis_config(schema))
    totals = {"cases": 0, "failures": 0, "errored": 0, "auth_warnings": 0}
    returncodes = []
    for name, phases, selection, keyed in RUNS:
        remaining = HARD_TIMEOUT - (time.monotonic() - started)
        key = register(server.url) if keyed else None
        report = REPORT_DIR / f"fuzz-{name}.json"
        returncode = run_schemathesis(server.url, config, phases, selection, key, report, remaining)
        if returncode is None:
            return 1
        returncodes.append(returncode)
        for field, value in summarize(report).items():
            totals[field] += value
    any_method_failures = check_any_method(server.url, schema)
    elapsed = time.monotonic() - started
    server_errors = [line for line in server.log().splitlines() if '"level": "ERROR"' in line]
    print(
        f"fuzz: {totals['cases']} cases, {totals['failures']} with failures, "
        f"{totals['errored']} errored, {totals['auth_warnings']} auth warnings, "
        f"{len(server_errors)} server error log lines, "
        f"{len(any_method_failures)} any-method failures, {elapsed:.1f}s "
        f"(checks all; phases examples, coverage, fuzzing, stateful; max {MAX_EXAMPLES} "
        f"examples per operation, seed {SEED})"
    )
    for line in any_method_failures + server_errors[:20]:
        print(line, file=sys.stderr)
    failed = any(returncodes) or totals["failures"] or totals["errored"]
    if failed or server_errors or any_method_failures:
        return 1
    if totals["auth_warnings"] or not totals["cases"]:
        return 1
    return 0


def _toml(value: object) -> str:
    # JSON strings, numbers, booleans and arrays of them are valid TOML.
    return json.dumps(value)


def schemathesis_config(schema: dict) -> str:
    """schemathesis.toml: what the schema says that schemathesis does not read itself."""
    lines = [f"[phases.stateful]\nmax-steps = {STATEFUL_STEPS}\n"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if operation.get("x-any-method"):
                # Every method is answered as GET is (check_any_method), never 405:
                # no probes with undeclared methods expecting 405.
                lines.append(
                    "[[operations]]\n"
                    f"include-path = {_toml(path)}\n"
                    "phases.coverage.unexpected-methods = []\n"
                )
            # Valid data the server may still refuse, for reasons outside the request:
            # Stripe's answer, the account's state (DELETE /v1/me's confirm), or an
            # Idempotency-Key already used for another request (422: the fuzzer draws
            # the same key for different cases; idempotency/tests cover replays).
            refused = [
                *operation.get("x-stripe-decides", []),
                *operation.get("x-state-decides", []),
                *([422] if operation.get("x-idempotent") else []),
            ]
            settings = []
            if refused:
                expected = ["2xx", "401", "409", "429", "5xx", *map(str, refused)]
                settings.append(
                    f"checks.positive_data_acceptance.expected-statuses = {_toml(expected)}"
                )
            if settings:
                # One filter naming the operation: schemathesis ORs separate include-path
                # and include-method filters, which would hand this block to every POST.
                lines.append(
                    "[[operations]]\n"
                    f"include-name = {_toml(f'{method.upper()} {path}')}\n"
                    + "\n".join(settings)
                    + "\n"
                )
    return "\n".join(lines)


def check_any_method(base_url: str, schema: dict) -> list[str]:
    """Operations marked x-any-method answer every method as they answer GET."""
    failures = []
    key = register(base_url)
    for path, operations in schema["paths"].items():
        if not operations.get("get", {}).get("x-any-method"):
            continue
        expected = call(base_url, "GET", path, key=key)
        for method in ANY_METHOD_PROBES:
            got = call(base_url, method, path, key=key)
            if got != expected:
                failures.append(f"fuzz: {method} {path} answered {got}, GET answered {expected}")
        unauthenticated = call(base_url, "TRACE", path)
        if unauthenticated[0] != 401:
            failures.append(f"fuzz: TRACE {path} without a key answered {unauthenticated}")
    return failures


def run_schemathesis(
    base_url: str,
    config: Path,
    phases: str,
    selection: list[str],
    key: str | None,
    report: Path,
    timeout: float,
) -> int | None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    auth = ["--header", f"Authorization: Bearer {key}"] if key else []
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{base_url}/v1/openapi.json",
        *selection,
        "--phases",
        phases,
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        "--workers",
        "2",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        *auth,
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    try:
        return subprocess.run(command, timeout=max(timeout, 1), check=False).returncode  # noqa: S603
    except subprocess.TimeoutExpired:
        print(f"fuzz: schemathesis exceeded FUZZ_TIMEOUT={HARD_TIMEOUT}s", file=sys.stderr)
        return None


def summarize(report: Path) -> dict[str, int]:
    """Cases run, cases with failures, errors and auth warnings from the JSON report."""
    data = json.loads(report.read_text())
    cases = data["test_cases"]
    return {
        "cases": cases["generated"],
        "failures": cases["with_failures"] + len(data["failures"]),
        "errored": cases["errored"] + len(data["errors"]) + data["operations"]["errored"],
        "auth_warnings": len(data["warnings"].get("missing_auth", [])),
    }


if __name__ == "__main__":
    sys.exit(main())
