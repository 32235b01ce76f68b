# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: venv run migrate test check format clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

# Local development on the embedded defaults (SQLite, process-local cache).
# Every variable in the README's configuration table is honoured when set.
run: venv
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python -m billing.payments.dev.devstripe $(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)

migrate: venv
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python manage.py migrate --noinput

# The whole suite. Uses PostgreSQL when DATABASE_URL points at it (CI does).
test: venv
	$(BIN)/pytest $(PYTEST_ARGS)

check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=on $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_DEBUG=on $(BIN)/python manage.py check

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache db.sqlite3 db.sqlite3-*

# --- Production serving ---------------------------------------------------------
# gunicorn with WORKERS processes on DATABASE_URL and REDIS_URL (see README,
# "Production"); DJANGO_SECRET_KEY is required (DJANGO_DEBUG is off).
WORKERS ?= 4
.PHONY: serve fuzz bench profile drills
serve: venv
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/gunicorn -c deploy/gunicorn.conf.py --bind $(HOST):$(PORT) --workers $(WORKERS)

# schemathesis against a gunicorn started on a free loopback port, bounded in time.
fuzz: venv
	$(BIN)/python deploy/fuzz.py

# Fault drills: gunicorn (+ nginx) on a throwaway PostgreSQL cluster and Redis of
# their own, broken on purpose; prints a table. Needs PostgreSQL's binaries,
# redis-server and nginx (see README, "Fault drills").
drills: venv
	$(BIN)/pytest -c drills/pytest.ini --confcutdir=drills drills $(PYTEST_ARGS)

# wrk against gunicorn (2 sync workers) on PostgreSQL + Redis: needs DATABASE_URL,
# REDIS_URL and wrk (apt-get install -y wrk). See README, "Benchmark".
bench: venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The hot paths in-process under pyinstrument, with SQL and Redis round trips counted.
profile: venv
	$(BIN)/python bench/profile.py $(PROFILE_ARGS)
