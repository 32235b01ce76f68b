"""The documentation runs as written: its marked shell blocks, against a fresh `make run`.

README.md first, then docs/*.md by name; every marked block runs twice in a row (a
reader runs a block again: each starts from a new agent of its own, a name with
``$RANDOM`` in it), and the answers of both runs are checked.

Marker convention (in README.md and docs/*.md):

- A line ``<!-- readme-test -->`` just before a ```` ```sh ```` block marks the block
  as runnable (blank lines may sit between the marker and the fence). Unmarked
  blocks are never run (placeholders such as ``ltx_your_key``, production hosts).
- ``<!-- readme-test NAME=value ... -->`` also says what the server needs for that
  block, as the prose tells the reader (e.g. ``LITHTRIX_FREE_CALL_LIMIT=3``). A block
  runs against a ``make run`` started with exactly its marker's variables (none: the
  defaults). When a block asks for other variables than the block before it, the
  server is stopped and started again with them, on the same port and the same
  database, as a reader restarts ``make run`` (localstripe starts afresh then).
- Every marked block runs in one bash session, in that order, from the repo root,
  so a variable set in one block is seen by the next, as in a reader's terminal.
  The test's servers allow more registrations per minute than the default
  (``LITHTRIX_REGISTER_RATE``): it registers faster than a reader types.
  ``127.0.0.1:8000`` in a block is replaced by the test server's address, and
  ``http://127.0.0.1:NNNNN`` by the localstripe address that server printed
  (``Stripe: localstripe at ...``); the session has that server's ``DATABASE_URL``
  (a fresh SQLite file), so management commands (``make superuser``,
  ``manage.py ...``) act on the server's database.
- A command is one line, or several joined by a trailing backslash. Every command
  must exit 0.
- The comment lines directly under a command (no blank line between) that begin with
  ``{``, a three-digit status, ``HTTP/`` or ``=>`` are its documented answer, and are
  checked; so is a trailing ``# 200 ...`` on the command's own line. Other comments
  are prose:
    - ``# {"tier": "pro", ..., "call_limit": null}``: the JSON the command printed
      (its body, after the headers, for ``curl -i``). Keys listed must be present
      with these values; ``"..."`` is any value, ``"ltx_..."`` a string starting with
      ``ltx_``; a bare ``...`` entry allows other keys, without it the keys must be
      exactly these. A trailing ``(HTTP 401)`` checks the status; without it a
      non-error answer must be 2xx. JSON that does not fit a line goes on in the
      next comment lines until its braces close.
    - ``# HTTP/1.1 201 Created``: the status of the command's last HTTP answer; the
      comment lines right under it of the form ``# Name: value`` are headers that
      answer carried (the name in any case; a value ending in ``...`` is a prefix).
    - ``# 200``, ``# 402 OVER_LIMIT``: the status of the command's last HTTP answer;
      ``# 200 200 200 402`` when the command printed only status codes (``curl -w
      '%{http_code}'`` in a loop): the codes it printed, in order.
    - ``# => Superuser created successfully.``: text the command printed.
  The status is read from the headers of the last ``curl`` the command ran (the
  session's ``curl`` adds ``-D <file>``; nothing else of the command changes); a
  command that ran no ``curl`` (``echo "$ANSWER"``) is checked against the previous
  one's.

To add a walkthrough: write it on its page as a reader would type it, put the
marker above its block, and document answers as above; make it right to run twice.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testing.servers import BASE_DIR, free_port, wait_until_up

# Servers or Python in subprocesses, or a browser: seconds each, not milliseconds.
pytestmark = pytest.mark.slow

README = BASE_DIR / "README.md"
DOCS = BASE_DIR / "docs"
# Registrations per minute for the test's servers: the blocks, each run twice, register
# dozens of agents within a minute from one address (a reader does not).
TEST_REGISTER_RATE = "600/m"
MARKER = re.compile(r"^<!--\s*readme-test\b(?P<env>[^>]*?)\s*-->\s*$")
DOCUMENTED_ADDRESS = "127.0.0.1:8000"
LOCALSTRIPE_PLACEHOLDER = "http://127.0.0.1:NNNNN"
LOCALSTRIPE_LINE = re.compile(r"Stripe: localstripe at (?P<address>http://\S+)")
SERVING_LINE = re.compile(r"^Serving: API ", re.MULTILINE)
ANSWER = re.compile(r"^(\{|\d{3}\b|=> |HTTP/)")
STATUS_LINE = re.compile(r"^HTTP/\S+ (\d{3})\b")
HEADER_LINE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9-]*):\s*(?P<value>.*?)\s*$")
TRAILING_ANSWER = re.compile(r"\s#\s+(?P<answer>\d{3}\b.*)$")
HTTP_STATUS = re.compile(r"\(HTTP (\d{3})\b")
STATUS_CODES = re.compile(r"^\d{3}(?:\s+\d{3})*\b")
MORE = "\u2026more"  # the key standing for a bare `...` entry


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    text: str
    env: dict[str, str]
    source: str = "README.md"


@dataclass
class Step:
    block_line: int
    command: str
    answers: list[str] = field(default_factory=list)
    source: str = "README.md"


def documented_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def readme_blocks(markdown: str, source: str = "README.md") -> list[Block]:
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
                assert line.strip() == "```sh", f"{source} line {i + 1}: a marked block is ```sh"
                blocks.append(Block(i + 1, "\n".join(lines[i + 1 : end]), pending, source))
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
            last = current.answers[-1] if current is not None and current.answers else ""
            if current is not None and last.startswith("{") and open_braces(last):
                current.answers[-1] = f"{last} {text}"  # JSON going on from the line above
            elif (
                current is not None
                and last
                and (STATUS_LINE.match(last) or HEADER_LINE.match(last))
                and (HEADER_LINE.match(text))
            ):
                current.answers.append(text)  # a header under `HTTP/1.1 200 OK`
            elif current is not None and ANSWER.match(text):
                current.answers.append(text)
            else:
                current = None  # prose: what follows answers nothing above it
        else:
            command = [lines[i]]
            while command[-1].rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command.append(lines[i])
            current = Step(block.line, "\n".join(command), source=block.source)
            trailing = TRAILING_ANSWER.search(command[-1])
            if trailing:
                current.answers.append(trailing["answer"])
            steps.append(current)
        i += 1
    return steps


def open_braces(text: str) -> int:
    """How many of the JSON text's `{` and `[` are still open at its end."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            in_string = not (char == '"' and not escaped)
            escaped = char == "\\" and not escaped
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
    return depth


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
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: {actual!r}, documented {len(expected)} items"]
        return [
            problem
            for n, (item, actual_item) in enumerate(zip(expected, actual, strict=True))
            for problem in mismatches(item, actual_item, f"{path}[{n}]")
        ]
    if isinstance(expected, str) and expected.endswith("..."):
        prefix = expected[:-3]
        if isinstance(actual, str) and actual.startswith(prefix):
            return []
        return [f"{path}: {actual!r} does not start with {prefix!r}"]
    return [] if expected == actual else [f"{path}: {actual!r}, documented {expected!r}"]


def response_headers(headers: str) -> dict[str, str]:
    """The headers of the last answer in a `curl -D` file, by lower-case name."""
    last = re.split(r"^(?=HTTP/)", headers, flags=re.MULTILINE)[-1]
    pairs = (line.split(":", 1) for line in last.splitlines()[1:] if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def check_answer(answer: str, stdout: str, status: int | None, headers: str = "") -> list[str]:
    if answer.startswith("=> "):
        text = answer[3:]
        return [] if text in stdout else [f"did not print {text!r}"]
    status_line = STATUS_LINE.match(answer)
    if status_line:
        return [] if status == int(status_line[1]) else [f"HTTP {status}, documented {answer}"]
    header = HEADER_LINE.match(answer)
    if header:
        actual = response_headers(headers).get(header["name"].lower())
        value = header["value"]
        if value.endswith("...") and actual is not None and actual.startswith(value[:-3]):
            return []
        return [] if actual == value else [f"header {header['name']}: {actual!r}, documented"]
    if answer.startswith("{"):
        expected = expected_json(answer)
        if stdout.startswith("HTTP/"):  # curl -i: the body follows the headers
            stdout = re.split(r"\r?\n\r?\n", stdout.strip())[-1]
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


def driver_script(segments: int, workdir: Path) -> str:
    """One bash session that runs segment-K.sh (K = 0, 1, ...) as each one appears.

    The test writes a segment once its server is up, and waits for segment-K.done
    before restarting the server for the next one.
    """
    return "\n".join(
        [
            # Observation only: every curl also writes its answer's headers to a file.
            'curl() { command curl -D "$__READMETEST_HEADERS" "$@"; }',
            f"for __READMETEST_SEGMENT in $(seq 0 {segments - 1}); do",
            f"  while [ ! -e {workdir}/segment-$__READMETEST_SEGMENT.sh ]; do sleep 0.1; done",
            f"  source {workdir}/segment-$__READMETEST_SEGMENT.sh",
            f"  : > {workdir}/segment-$__READMETEST_SEGMENT.done",
            "done",
            "",
        ]
    )


def segment_script(
    numbered: list[tuple[int, Step]], address: str, localstripe: str, workdir: Path
) -> str:
    lines = []
    for n, step in numbered:
        command = step.command.replace(DOCUMENTED_ADDRESS, address)
        command = command.replace(LOCALSTRIPE_PLACEHOLDER, localstripe)
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
        and key not in {"DATABASE_URL", "REDIS_URL", "EMAIL_URL", "PORT", "HOST"}
    }
    env.update(overrides)
    return env


def wait_for_health(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    try:
        wait_until_up(url, process, timeout=timeout)
    except RuntimeError as exc:  # make run exited, or never answered
        pytest.fail(f"make run: {exc}:\n{log.read_text()[-3000:]}")


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
    headers = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nIdempotent-Replayed: true\r\n"
    assert check_answer("HTTP/1.1 201 Created", "", 201, headers) == []
    assert check_answer("HTTP/1.1 201 Created", "", 200, headers) != []
    assert check_answer("idempotent-replayed: true", "", 201, headers) == []
    assert check_answer("Idempotent-Replayed: tr...", "", 201, headers) == []
    assert check_answer("Idempotent-Replayed: false", "", 201, headers) != []
    assert check_answer("X-Calls-Remaining: 299", "", 201, headers) != []
    printed_i = 'HTTP/1.1 201 Created\r\nX: y\r\n\r\n{"api_key": "ltx_1"}'
    assert check_answer('{"api_key": "ltx_..."}', printed_i, 201) == []
    assert check_answer('{"api_key": "ltx_2..."}', printed_i, 201) != []
    keys = '{"keys": [{"prefix": "ltx_...", "current": true}, {"prefix": "ltx_...", ...}]}'
    two = {"keys": [{"prefix": "ltx_a", "current": True}, {"prefix": "ltx_b", "current": False}]}
    assert check_answer(keys, json.dumps(two), 200) == []
    assert check_answer(keys, json.dumps({"keys": two["keys"][:1]}), 200) != []
    assert check_answer(keys, json.dumps({"keys": two["keys"][::-1]}), 200) != []


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
            "curl -s -i $B/v1/keys",
            "# HTTP/1.1 200 OK",
            "# X-Agent-Tier: free",
            '# {"keys": [{"prefix": "ltx_...",',
            '#           "current": true}]}   (HTTP 200)',
            "# Note: prose again, not a header",
            "```",
            "```sh",
            "not marked",
            "```",
        ]
    )
    [block] = readme_blocks(markdown)
    assert block.env == {"LITHTRIX_FREE_CALL_LIMIT": "3"}
    first, second, third = block_steps(block)
    assert first.command.endswith('-H "Authorization: Bearer $KEY"')
    assert first.answers == ['{"tier": "free", ...}']
    assert second.answers == ["200 again"]
    assert third.answers == [
        "HTTP/1.1 200 OK",
        "X-Agent-Tier: free",
        '{"keys": [{"prefix": "ltx_...", "current": true}]}   (HTTP 200)',
    ]


# --- the README -----------------------------------------------------------------


def start_make_run(
    port: int, database_url: str, env: dict[str, str], log: Path
) -> subprocess.Popen:
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            ["make", "run"],
            cwd=BASE_DIR,
            env=clean_environment(
                PORT=str(port),
                DATABASE_URL=database_url,
                LITHTRIX_REGISTER_RATE=TEST_REGISTER_RATE,
                **env,
            ),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_for_file(path: Path, bash: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert bash.poll() is None, f"the README's bash session ended early ({bash.returncode})"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout:.0f}s"
        time.sleep(0.1)


def wait_for_port_closed(port: int, timeout: float = 20) -> None:
    """The stopped server's listening socket is gone (the next one takes the port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)
    pytest.fail(f"port {port} still answers {timeout:.0f}s after make run was stopped")


def wait_for_line(pattern: re.Pattern[str], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not pattern.search(log.read_text()):
        assert time.monotonic() < deadline, f"make run printed no {pattern.pattern!r}"
        time.sleep(0.1)


def test_documentation_walkthroughs_run_as_written_twice(tmp_path: Path) -> None:
    blocks = [
        block
        for page in documented_pages()
        for block in readme_blocks(page.read_text(), str(page.relative_to(BASE_DIR)))
    ]
    # The walkthrough, agent API, billing, gateway and console blocks at least: a lost
    # marker must not turn this test into one that checks nothing.
    sources = {block.source for block in blocks}
    walkthroughs = {"README.md", "docs/agent-api.md", "docs/billing.md", "docs/metering.md"}
    assert walkthroughs | {"docs/console.md"} <= sources, sources
    assert len(blocks) >= 9, "the pages have lost their <!-- readme-test --> markers"
    # Runs of blocks with the same server settings, each against its own make run;
    # each block twice in a row, as a reader who runs it again.
    segments: list[tuple[dict[str, str], list[Step]]] = []
    for block in blocks:
        if not segments or segments[-1][0] != block.env:
            segments.append((block.env, []))
        segments[-1][1].extend(block_steps(block) + block_steps(block))
    steps = [step for _, segment in segments for step in segment]

    port = free_port()
    address = f"127.0.0.1:{port}"
    database_url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    workdir = tmp_path / "steps"
    workdir.mkdir()
    driver = tmp_path / "readme.sh"
    driver.write_text(driver_script(len(segments), workdir))
    bash = subprocess.Popen(
        ["bash", str(driver)],
        cwd=BASE_DIR,
        env=clean_environment(DATABASE_URL=database_url),
        stdin=subprocess.DEVNULL,
    )
    server = None
    try:
        first = 0
        for k, (env, segment) in enumerate(segments):
            if server is not None:
                wait_for_file(workdir / f"segment-{k - 1}.done", bash, timeout=300)
                stop_process_group(server)
                wait_for_port_closed(port)
            log = tmp_path / f"make-run-{k}.log"
            server = start_make_run(port, database_url, env, log)
            wait_for_health(f"http://{address}/healthz", server, log, timeout=300)
            wait_for_line(SERVING_LINE, log)
            printed = LOCALSTRIPE_LINE.search(log.read_text())
            localstripe = printed["address"] if printed else LOCALSTRIPE_PLACEHOLDER
            numbered = list(enumerate(segment, start=first))
            first += len(segment)
            script = workdir / f"segment-{k}.tmp"
            script.write_text(segment_script(numbered, address, localstripe, workdir))
            script.rename(workdir / f"segment-{k}.sh")  # whole, never half-written
        assert bash.wait(timeout=300) == 0
        status, last_headers = None, ""
        for n, step in enumerate(steps):
            rc = int((workdir / f"rc-{n}").read_text())
            stdout = (workdir / f"out-{n}").read_text()
            stderr = (workdir / f"err-{n}").read_text()
            headers = (workdir / f"headers-{n}").read_text()
            if last_status(headers):
                status, last_headers = last_status(headers), headers
            where = f"{step.source} block at line {step.block_line}:\n{step.command}\n"
            output = f"stdout: {stdout[-1000:]}\nstderr: {stderr[-1000:]}"
            assert rc == 0, f"{where}exited {rc}\n{output}"
            for answer in step.answers:
                problems = check_answer(answer, stdout, status, last_headers)
                assert not problems, f"{where}documented: {answer}\nprinted: {stdout[-1000:]}\n" + (
                    "\n".join(problems)
                )
    finally:
        if bash.poll() is None:
            bash.kill()
            bash.wait()
        if server is not None:
            stop_process_group(server)
