"""Fuzz the running API with schemathesis against its own OpenAPI schema (`make fuzz`).

Starts gunicorn on a free loopback port (DATABASE_URL / REDIS_URL when set, else a
throwaway SQLite file and process-local caches), registers an agent for the Bearer
header, and runs schemathesis with a fixed seed, a cap on examples per operation and
a hard time limit. Fails on any 5xx answer and on any answer that does not match
the schema (status code, content type, headers, body). Prints the number of cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
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

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "150"))
HARD_TIMEOUT = int(os.environ.get("FUZZ_TIMEOUT", "150"))
REPORT_DIR = BASE_DIR / "artifacts"
SEED = os.environ.get("FUZZ_SEED", "20261125")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def register(base_url: str) -> str:
    body = json.dumps(
        {"agent_name": f"fuzz-{int(time.time() * 1000)}", "owner_identifier": "fuzz@example.com"}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base_url}/v1/register",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.load(response)["api_key"]


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
        # Secret-scanning reports are verified against a local public key list:
        # the fuzzer must not reach GitHub (and the machine may have no network).
        overrides["LITHTRIX_SECRET_SCANNING_KEYS_FILE"] = str(write_secret_scanning_keys(tmp_dir))
        env = app_environment(overrides)
        try:
            return fuzz(env, tmp_dir, workers)
        finally:
            stop_localstripe(localstripe)


def fuzz(env: dict[str, str], tmp_dir: Path, workers: int) -> int:
    manage("migrate", "--noinput", "-v0", env=env)
    manage("billing_localstripe_setup", env=env)
    log_path = tmp_dir / "gunicorn.log"
    with running_gunicorn(workers=workers, env=env, log_path=log_path) as server:
        started = time.monotonic()
        totals = {"cases": 0, "failures": 0, "errored": 0, "auth_warnings": 0}
        returncodes = []
        # Key rotation, revocation and deletion invalidate the key every other
        # operation uses: each gets a run (and a key) of its own.
        for name, selection in RUNS:
            report = REPORT_DIR / f"fuzz-{name}.json"
            returncode = run_schemathesis(server.url, register(server.url), selection, report)
            if returncode is None:
                return 1
            returncodes.append(returncode)
            for field, value in summarize(report).items():
                totals[field] += value
        elapsed = time.monotonic() - started
        server_errors = [line for line in server.log().splitlines() if '"level": "ERROR"' in line]
    print(
        f"fuzz: {totals['cases']} cases, {totals['failures']} with failures, "
        f"{totals['errored']} errored, {totals['auth_warnings']} auth warnings, "
        f"{len(server_errors)} server error log lines, {elapsed:.1f}s "
        f"(max {MAX_EXAMPLES} examples per operation, seed {SEED})"
    )
    for line in server_errors[:20]:
        print(line, file=sys.stderr)
    if any(returncodes) or totals["failures"] or totals["errored"] or server_errors:
        return 1
    if totals["auth_warnings"] or not totals["cases"]:
        return 1
    return 0


RUNS = [
    (
        "api",
        [
            "--exclude-path",
            "/v1/keys/rotate",
            "--exclude-path",
            "/v1/keys/revoke",
            "--exclude-operation-id",
            "me_destroy",
        ],
    ),
    ("rotate", ["--include-path", "/v1/keys/rotate"]),
    ("revoke", ["--include-path", "/v1/keys/revoke"]),
    ("delete", ["--include-operation-id", "me_destroy"]),
]


def run_schemathesis(base_url: str, key: str, selection: list[str], report: Path) -> int | None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{base_url}/v1/openapi.json",
        *selection,
        "--checks",
        CHECKS,
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
        "--no-color",
        "--header",
        f"Authorization: Bearer {key}",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    try:
        return subprocess.run(command, timeout=HARD_TIMEOUT, check=False).returncode  # noqa: S603
    except subprocess.TimeoutExpired:
        print(f"fuzz: schemathesis exceeded {HARD_TIMEOUT}s", file=sys.stderr)
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
