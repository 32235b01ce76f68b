# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
PIP := $(BIN)/python -m pip --disable-pip-version-check install --quiet
UV_VERSION := 0.13.8

.PHONY: venv dev-venv run migrate superuser test check format clean reset docs docs-serve

# Installs go through uv when it can be had (several times quicker than pip at
# resolving and unpacking, the bulk of a cold make run): the host's uv, else uv put
# into the venv by the host's pip. Without it, or when uv fails, pip: the venv gets a
# current pip from the host's pip when that can install into another environment
# (pip >= 22.3), else the usual ensurepip way.
# Three installs, each with its stamp: what serving needs (requirements-run.txt: the
# runtime set plus localstripe for make run), on top of it the test and tool set
# (requirements-dev.txt: pytest, Playwright, schemathesis, ruff...), and the
# documentation site's (requirements-docs.txt: MkDocs, for make docs).
$(BIN)/python:
	$(PYTHON) -m venv --without-pip $(VENV)
	@if command -v uv >/dev/null 2>&1; then ln -s "$$(command -v uv)" $(BIN)/uv; \
	else $(PYTHON) -m pip --python $(BIN)/python install --quiet uv==$(UV_VERSION) 2>/dev/null || true; fi

PIP_BOOTSTRAP = $(BIN)/python -m pip --version >/dev/null 2>&1 \
  || $(PYTHON) -m pip --python $(BIN)/python install --quiet --upgrade pip 2>/dev/null \
  || { $(BIN)/python -m ensurepip --upgrade --default-pip >/dev/null && $(PIP) --upgrade pip; }
install = if [ -x $(BIN)/uv ] && $(BIN)/uv pip install --quiet --python $(BIN)/python $(1); \
  then :; else { $(PIP_BOOTSTRAP); } && $(PIP) $(1); fi

$(BIN)/.installed-run: requirements.txt requirements-run.txt | $(BIN)/python
	$(call install,-r requirements-run.txt)
	touch $@

$(BIN)/.installed-dev: requirements-dev.txt $(BIN)/.installed-run
	$(call install,-r requirements-dev.txt)
	touch $@

$(BIN)/.installed-docs: requirements-docs.txt | $(BIN)/python
	$(call install,-r requirements-docs.txt)
	touch $@

venv: $(BIN)/.installed-run
dev-venv: $(BIN)/.installed-dev

# Local development on the embedded defaults (SQLite, process-local cache).
# Every variable in docs/configuration.md is honoured when set. One job worker
# (manage.py qcluster) runs beside the dev server and stops with it. Prints one line with the local URLs (API, docs, admin, localstripe) once it serves.
# devstripe migrates in the process that prepares localstripe (one Django start and
# one run of the system checks: runserver skips its own). The dev server serves each
# request in a new thread, whose persistent connection nobody would ever close: with
# DATABASE_URL on PostgreSQL, connections close after each request unless set.
run: venv
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} DJANGO_CONN_MAX_AGE=$${DJANGO_CONN_MAX_AGE:-0} $(BIN)/python -m billing.payments.dev.devstripe --migrate \
	  $(BIN)/python -m events.dev.worker $(BIN)/python manage.py runserver --noreload --skip-checks $(HOST):$(PORT)

# A fresh start: make run's SQLite database goes, and the next make run starts a
# fresh localstripe with it (its state lives only in memory). Refused while a
# server answers on PORT (stop make run first) and when DATABASE_URL names another
# database (that one is never wiped from here).
reset:
	@if curl -s -o /dev/null --max-time 2 http://$(HOST):$(PORT)/healthz 2>/dev/null; then \
	  echo "make reset: a server answers on $(HOST):$(PORT); stop make run first (Ctrl-C)."; exit 1; fi
	@case "$${DATABASE_URL:-sqlite:///db.sqlite3}" in sqlite:///db.sqlite3) ;; \
	  *) echo "make reset: DATABASE_URL is set; only make run's own db.sqlite3 is reset."; exit 1;; esac
	rm -f db.sqlite3 db.sqlite3-*
	@echo "Fresh start: make run migrates a new db.sqlite3 and starts a new localstripe."

migrate: venv
	DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python manage.py migrate --noinput

# An administrator for /admin/ on make run's database (DATABASE_URL's when set).
# Asks for name, e-mail and password; asks nothing when DJANGO_SUPERUSER_USERNAME,
# DJANGO_SUPERUSER_EMAIL and DJANGO_SUPERUSER_PASSWORD are set.
# Run again with the same DJANGO_SUPERUSER_USERNAME, it changes nothing and succeeds.
superuser: migrate
	@if [ -n "$$DJANGO_SUPERUSER_USERNAME" ] && DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python manage.py shell -c \
	  "import os, sys; from django.contrib.auth import get_user_model; sys.exit(0 if get_user_model().objects.filter(username=os.environ['DJANGO_SUPERUSER_USERNAME']).exists() else 1)"; \
	then echo "Superuser $$DJANGO_SUPERUSER_USERNAME exists already; nothing changed."; \
	else DJANGO_DEBUG=$${DJANGO_DEBUG:-on} $(BIN)/python manage.py createsuperuser $${DJANGO_SUPERUSER_PASSWORD:+--noinput}; fi
	@echo "Log in at http://$(HOST):$(PORT)/admin/ (with make run serving)."

# The whole suite. Uses PostgreSQL when DATABASE_URL points at it (CI does).
test: dev-venv
	$(BIN)/pytest $(PYTEST_ARGS)

check: dev-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	DJANGO_DEBUG=on $(BIN)/python manage.py makemigrations --check --dry-run
	DJANGO_DEBUG=on $(BIN)/python manage.py check

format: dev-venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache db.sqlite3 db.sqlite3-* site

# The documentation site (docs/, mkdocs.yml): built into site/ with --strict, so a
# broken link or anchor, or a page missing from nav, fails; docs-serve previews it.
docs: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-serve: $(BIN)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr $(HOST):$(PORT)

# --- Production serving ---------------------------------------------------------
# gunicorn with WORKERS processes on DATABASE_URL and REDIS_URL (see
# docs/operations.md); DJANGO_SECRET_KEY is required (DJANGO_DEBUG is off). Every
# required setting is checked first, all named in one message
# (deploy/serve_check.py); then a missing PostgreSQL database is created
# (deploy/createdb.py).
# GUNICORN_WORKERS works too, as in deploy/gunicorn.conf.py.
WORKERS ?= $(or $(GUNICORN_WORKERS),4)
.PHONY: serve worker fuzz bench bench-redis capacity profile drills
serve: venv
	@$(BIN)/python deploy/serve_check.py
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
# redis-server and nginx (see docs/drills.md).
drills: dev-venv
	$(BIN)/pytest -c drills/pytest.ini --confcutdir=drills drills $(PYTEST_ARGS)

# wrk against nginx + gunicorn as deployed (deploy/; BENCH_ARGS="--shape direct": 4 sync
# workers on the port) on PostgreSQL + Redis: needs DATABASE_URL,
# REDIS_URL and wrk (apt-get install -y wrk). Writes bench/results/<time>-<sha>.json;
# BENCH_ARGS="--compare bench/results/<earlier>.json" prints the ratio change.
# See docs/benchmark.md.
bench: dev-venv
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# The rate-limit counting script's scripts/s: a throwaway redis-server against a
# throwaway Redis Cluster (never the shared Redis). See docs/benchmark.md.
bench-redis: dev-venv
	$(BIN)/python bench/redis_scripts.py $(REDIS_BENCH_ARGS)

# The runs the capacity model is written from (3 x bench, 2 hosts, gthread workers,
# Redis scripts/s, replica lag), one after the other, then a summary: about 25
# minutes; CAPACITY_ARGS=--short proves the sequence in about six.
capacity: dev-venv
	$(BIN)/python bench/capacity.py $(CAPACITY_ARGS)

# The hot paths in-process under pyinstrument, with SQL and Redis round trips counted.
profile: dev-venv
	$(BIN)/python bench/profile.py $(PROFILE_ARGS)
