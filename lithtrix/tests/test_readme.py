"""The README runs as written: its marked shell blocks, in order, against a fresh `make run`.

Marker convention (in README.md):

- A line ``<!-- readme-test -->`` just before a ```` ```sh ```` block marks the block
  as runnable (blank lines may sit between the marker and the fence). Unmarked
  blocks are never run (placeholders such as ``ltx_your_key``, production hosts).
- ``<!-- readme-test NAME=value ... -->`` also says what the server needs for that
  block, as the prose tells the reader (e.g. ``LITHTRIX_FREE_CALL_LIMIT=3``). One
  ``make run`` serves every block, started with the union of these variables (two
  blocks asking for different values of one variable is an error here).
- Every marked block runs in one bash session, in README order, from the repo root,
  so a variable set in one block is seen by the next, as in a reader's terminal.
  ``127.0.0.1:8000`` in a block is replaced by the test server's address; the
  session has that server's ``DATABASE_URL`` (a fresh SQLite file), so management
  commands (``make superuser``, ``manage.py ...``) act on the server's database.
- A command is one line, or several joined by a trailing backslash. Every command
  must exit 0.
- The comment lines directly under a command (no blank line between) that begin with
  ``{``, a three-digit status or ``=>`` are its documented answer, and are checked; so
  is a trailing ``# 200 ...`` on the command's own line. Other comments are prose:
    - ``# {"tier": "pro", ..., "call_limit": null}``: the JSON the command printed.
      Keys listed must be present with these values; ``"..."`` is any value,
      ``"ltx_..."`` a string starting with ``ltx_``; a bare ``...`` entry allows
      other keys, without it the keys must be exactly these. A trailing
      ``(HTTP 401)`` checks the status; without it a non-error answer must be 2xx.
    - ``# 200``, ``# 402 OVER_LIMIT``: the status of the command's last HTTP answer;
      ``# 200 200 200 402`` when the command printed only status codes (``curl -w
      '%{http_code}'`` in a loop): the codes it printed, in order.
    - ``# => Superuser created successfully.``: text the command printed.
  The status is read from the headers of the last ``curl`` the command ran (the
  session's ``curl`` adds ``-D <file>``; nothing else of the command changes); a
  command that ran no ``curl`` (``echo "$ANSWER"``) is checked against the previous
  one's.

To add a walkthrough: write it in the README as a reader would type it, put the
marker above its block, and document answers as above.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testing.servers import BASE_DIR, free_port

README = BASE_DIR / "README.md"
MARKER = re.compile(r"^<!--\s*readme-test\b(?P<env>[^>]*?)\s*-->\s*$")
DOCUMENTED_ADDRESS = "127.0.0.1:8000"
ANSWER = re.compile(r"^(\{|\d{3}\b|=> )")
TRAILING_ANSWER = re.compile(r"\s#\s+(?P<answer>\d{3}\b.*)$")
HTTP_STATUS = re.compile(r"\(HTTP (\d{3})\)")
STATUS_CODES = re.compile(r"^\d{3}(?:\s+\d{3})*\b")
MORE = "\u2026more"  # the key standing for a bare `...` entry


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    text: str
    env: dict[str, str]


@dataclass
class Step:
    block_line: int
    command: str
    answers: list[str] = field(default_factory=list)


def readme_blocks(markdown: str) -> list[Block]:
    blocks: list[Block] = []
    lines = markdown.splitlines()
    pending: dict[str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line.strip())
        if marker:
            pending = dict(pair.split("=", 1) for pair in shlex.split(marker["env"]))
        elif line.startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if pending is not None:
                assert line.strip() == "```sh", f"README line {i + 1}: a marked block is ```sh"
                blocks.append(Block(i + 1, "\n".join(lines[i + 1 : end]), pending))
            pending = None
            i = end
        elif line.strip():
            pending = None  # a marker applies to the block right below it only
        i += 1
    return blocks


def block_steps(block: Block) -> list[Step]:
    steps: list[Step] = []
    lines = block.text.splitlines()
    i = 0
    current: Step | None = None  # the command whose answer lines may follow
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped:
            current = None
        elif stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if current is not None and ANSWER.match(text):
                current.answers.append(text)
            else:
                current = None  # prose: what follows answers nothing above it
        else:
            command = [lines[i]]
            while command[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command.append(lines[i])
            current = Step(block.line, "\n".join(command))
            trailing = TRAILING_ANSWER.search(command[-1])
            if trailing:
                current.answers.append(trailing["answer"])
            steps.append(current)
        i += 1
    return steps


def expected_json(answer: str):
    """The JSON of a documented answer, with its `...` placeholders made explicit."""
    text = answer[answer.index("{") : answer.rindex("}") + 1]
    text = re.sub(r"([{,])\s*\.\.\.\s*(?=[,}])", rf'\1"{MORE}": true', text)
    return json.loads(text)


def mismatches(expected, actual, path: str = "$") -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        problems = []
        keys = {key for key in expected if key != MORE}
        if MORE not in expected and set(actual) != keys:
            problems.append(f"{path}: keys {sorted(actual)}, documented {sorted(keys)}")
        for key in keys:
            if key not in actual:
                problems.append(f"{path}.{key}: missing")
            else:
                problems += mismatches(expected[key], actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, str) and expected.endswith("..."):
        prefix = expected[:-3]
        if isinstance(actual, str) and actual.startswith(prefix):
            return []
        return [f"{path}: {actual!r} does not start with {prefix!r}"]
    return [] if expected == actual else [f"{path}: {actual!r}, documented {expected!r}"]


def check_answer(answer: str, stdout: str, status: int | None) -> list[str]:
    if answer.startswith("=> "):
        text = answer[3:]
        return [] if text in stdout else [f"did not print {text!r}"]
    if answer.startswith("{"):
        expected = expected_json(answer)
        try:
            actual = json.loads(stdout)
        except ValueError:
            return [f"printed no JSON: {stdout[-500:]!r}"]
        problems = mismatches(expected, actual)
        documented_status = HTTP_STATUS.search(answer)
        if documented_status:
            if status != int(documented_status[1]):
                problems.append(f"HTTP {status}, documented {documented_status[1]}")
        elif expected.get("status") != "error" and not (status and 200 <= status < 300):
            problems.append(f"HTTP {status}, documented a successful answer")
        return problems
    matched = STATUS_CODES.match(answer)
    assert matched is not None, answer
    codes = matched[0].split()
    printed = stdout.split()
    if printed and all(re.fullmatch(r"\d{3}", word) for word in printed):
        return [] if printed == codes else [f"printed {printed}, documented {codes}"]
    return [] if str(status) == codes[0] else [f"HTTP {status}, documented {codes[0]}"]


def bash_script(steps: list[Step], address: str, workdir: Path) -> str:
    lines = [
        # Observation only: every curl also writes its answer's headers to a file.
        'curl() { command curl -D "$__READMETEST_HEADERS" "$@"; }',
    ]
    for n, step in enumerate(steps):
        command = step.command.replace(DOCUMENTED_ADDRESS, address)
        lines += [
            f"__READMETEST_HEADERS={workdir}/headers-{n}",
            f": > {workdir}/headers-{n}",
            "{",
            command,
            f"}} > {workdir}/out-{n} 2> {workdir}/err-{n} < /dev/null",
            f"echo $? > {workdir}/rc-{n}",
        ]
    return "\n".join(lines) + "\n"


def last_status(headers: str) -> int | None:
    statuses = re.findall(r"^HTTP/\S+ (\d{3})", headers, flags=re.MULTILINE)
    return int(statuses[-1]) if statuses else None


def clean_environment(**overrides: str) -> dict[str, str]:
    """The environment of a reader's fresh terminal: none of the suite's settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "LITHTRIX_", "STRIPE_", "PYTEST_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "PORT", "HOST"}
    }
    env.update(overrides)
    return env


def wait_for_health(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"make run exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"make run did not answer {url} in {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def stop_process_group(process: subprocess.Popen) -> None:
    """make, its shell, devstripe, localstripe and runserver: the session this test began."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- the convention itself ------------------------------------------------------


def test_answer_checks_catch_a_difference() -> None:
    pro = '{"tier":"pro",...,"call_limit":null,"stripe_customer_id":"cus_..."}'
    actual = {"tier": "pro", "call_limit": None, "stripe_customer_id": "cus_1", "x": 1}
    assert check_answer(pro, json.dumps(actual), 200) == []
    assert check_answer(pro, json.dumps({**actual, "tier": "free"}), 200) != []
    assert check_answer(pro, json.dumps({**actual, "stripe_customer_id": "x"}), 200) != []
    closed = '{"api_key": "ltx_...", "agent_id": "..."}'
    assert check_answer(closed, '{"api_key": "ltx_1", "agent_id": "a"}', 201) == []
    assert check_answer(closed, '{"api_key": "ltx_1", "agent_id": "a", "x": 1}', 201) != []
    assert check_answer(closed, '{"api_key": "ltx_1", "agent_id": "a"}', 409) != []
    error = '{"status": "error", "error_code": "INVALID_API_KEY", "message": "..."}   (HTTP 401)'
    envelope = '{"status": "error", "error_code": "INVALID_API_KEY", "message": "no"}'
    assert check_answer(error, envelope, 401) == []
    assert check_answer(error, envelope, 403) != []
    assert check_answer("200 200 200 402  (one per line)", "200\n200\n200\n402\n", 402) == []
    assert check_answer("200 200 200 402  (one per line)", "200\n200\n200\n200\n", 200) != []
    assert check_answer("200 again", "", 200) == []
    assert check_answer("200 again", "", 401) != []
    assert check_answer("=> Superuser created.", "make: x\nSuperuser created.\n", None) == []
    assert check_answer("=> Superuser created.", "Error: That username is taken.", None) != []


def test_steps_and_answers_are_read_from_a_block() -> None:
    markdown = "\n".join(
        [
            "<!-- readme-test LITHTRIX_FREE_CALL_LIMIT=3 -->",
            "```sh",
            "# prose before a command",
            "curl -s $B/v1/me \\",
            '  -H "Authorization: Bearer $KEY"',
            '# {"tier": "free", ...}',
            "# prose after the answer",
            "curl -s -o /dev/null -w '%{http_code}' $B/v1/authorize   # 200 again",
            "",
            "# 404 is prose here: a blank line separates it from the command",
            "```",
            "```sh",
            "not marked",
            "```",
        ]
    )
    [block] = readme_blocks(markdown)
    assert block.env == {"LITHTRIX_FREE_CALL_LIMIT": "3"}
    first, second = block_steps(block)
    assert first.command.endswith('-H "Authorization: Bearer $KEY"')
    assert first.answers == ['{"tier": "free", ...}']
    assert second.answers == ["200 again"]


# --- the README -----------------------------------------------------------------


def test_readme_walkthroughs_run_as_written(tmp_path: Path) -> None:
    blocks = readme_blocks(README.read_text())
    # The walkthrough, billing and admin blocks at least: a lost marker must not
    # turn this test into one that checks nothing.
    assert len(blocks) >= 3, "README.md has lost its <!-- readme-test --> markers"
    server_env: dict[str, str] = {}
    for block in blocks:
        for name, value in block.env.items():
            assert server_env.setdefault(name, value) == value, (
                f"README line {block.line}: {name}={value} conflicts with {server_env[name]}"
            )
    steps = [step for block in blocks for step in block_steps(block)]

    port = free_port()
    address = f"127.0.0.1:{port}"
    database_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    log = tmp_path / "make-run.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(
            ["make", "run"],
            cwd=BASE_DIR,
            env=clean_environment(PORT=str(port), DATABASE_URL=database_url, **server_env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for_health(f"http://{address}/healthz", server, log, timeout=300)
        workdir = tmp_path / "steps"
        workdir.mkdir()
        script = tmp_path / "readme.sh"
        script.write_text(bash_script(steps, address, workdir))
        subprocess.run(
            ["bash", str(script)],
            cwd=BASE_DIR,
            env=clean_environment(DATABASE_URL=database_url),
            timeout=300,
            check=True,
        )
        status = None
        for n, step in enumerate(steps):
            rc = int((workdir / f"rc-{n}").read_text())
            stdout = (workdir / f"out-{n}").read_text()
            stderr = (workdir / f"err-{n}").read_text()
            status = last_status((workdir / f"headers-{n}").read_text()) or status
            where = f"README block at line {step.block_line}:\n{step.command}\n"
            output = f"stdout: {stdout[-1000:]}\nstderr: {stderr[-1000:]}"
            assert rc == 0, f"{where}exited {rc}\n{output}"
            for answer in step.answers:
                problems = check_answer(answer, stdout, status)
                assert not problems, f"{where}documented: {answer}\nprinted: {stdout[-1000:]}\n" + (
                    "\n".join(problems)
                )
    finally:
        stop_process_group(server)
