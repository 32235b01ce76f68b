# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
PIP := $(BIN)/python -m pip --disable-pip-version-check install --quiet

.PHONY: venv dev-venv run migrate superuser test check format clean

# Two installs, each with its stamp: what serving needs (requirements-run.txt: the
# runtime set plus localstripe for make run), and on top of it the test and tool
# set (requirements-dev.txt: pytest, Playwright, schemathesis, ruff...).
# The venv gets a current pip (much quicker than Python's bundled one at choosing
# wheels) from the host's pip when that can install into another environment
# (pip >= 22.3), which spares ensurepip's bundled pip and setuptools; else the usual way.
$(BIN)/python:
	$(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(BIN)/python install --quiet --upgrade pip 2>/dev/null \
	  || { $(BIN)/python -m ensurepip --upgrade --default-pip >/dev/null && $(PIP) --upgrade pip; }

$(BIN)/.installed-run: requirements.txt requirements-run.txt | $(BIN)/python
	$(PIP) -r requirements-run.txt
	touch $@

$(BIN)/.installed-dev: requirements-dev.txt $(BIN)/.installed-run
	$(PIP) -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed-run
dev-venv: $(BIN)/.installed-dev

# Local development on the embedded defaults (SQLite, process-local cache).
# Every variable in the README's configuration table is honoured when set. One job
# worker (manage.py qcluster) runs beside the dev server and stops with it.
run: venv
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python -m billing.payments.dev.devstripe \
	  $(BIN)/python -m events.dev.worker $(BIN)/python manage.py runserver --noreload $(HOST):$(PORT)

migrate: venv
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python manage.py migrate --noinput

# An administrator for /admin/ on make run's database (DATABASE_URL's when set).
# Asks for name, e-mail and password; asks nothing when DJANGO_SUPERUSER_USERNAME,
# DJANGO_SUPERUSER_EMAIL and DJANGO_SUPERUSER_PASSWORD are set.
superuser: migrate
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python manage.py createsuperuser $${DJANGO_SUPERUSER_PASSWORD:+--noinput}

# The whole suite. Uses PostgreSQL when DATABASE_URL points at it (CI does).
test: dev-venv
	$(BIN)/pytest $(PYTEST_ARGS)

check: dev-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	DJANGO_DEBUG=on $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_DEBUG=on $(BIN)/python manage.py check

format: dev-venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache db.sqlite3 db.sqlite3-*

# --- Production serving ---------------------------------------------------------
# gunicorn with WORKERS processes on DATABASE_URL and REDIS_URL (see README,
# "Production"); DJANGO_SECRET_KEY is required (DJANGO_DEBUG is off). A missing
# PostgreSQL database is created first (deploy/createdb.py).
WORKERS ?= 4
.PHONY: serve worker fuzz bench profile drills
serve: venv
	$(BIN)/python deploy/createdb.py
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/gunicorn -c deploy/gunicorn.conf.py --bind $(HOST):$(PORT) --workers $(WORKERS)

# A job worker (django-q2's qcluster) on the same environment as make serve; run
# one or more on any host (deploy/systemd/lithtrix-worker.service).
worker: venv
	$(BIN)/python manage.py qcluster

# schemathesis against a gunicorn started on a free loopback port, bounded in time.
fuzz: dev-venv
	$(BIN)/python deploy/fuzz.py

# Fault drills: gunicorn (+ nginx) on a throwaway PostgreSQL cluster and Redis of
# their own, broken on purpose; prints a table. Needs PostgreSQL's binaries,
# redis-server and nginx (see README, "Fault drills").
drills: venv
	$(BIN)/pytest -c drills/pytest.ini --confcutdir=drills drills $(PYTEST_ARGS)

# wrk against gunicorn (4 sync workers) on PostgreSQL + Redis: needs DATABASE_URL,
# REDIS_URL and wrk (apt-get install -y wrk). Writes bench/results/<time>-<sha>.json;
# BENCH_ARGS="--compare bench/results/<earlier>.json" prints the ratio change.
# See README, "Benchmark".
bench: dev-venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The hot paths in-process under pyinstrument, with SQL and Redis round trips counted.
profile: dev-venv
	$(BIN)/python bench/profile.py $(PROFILE_ARGS)
