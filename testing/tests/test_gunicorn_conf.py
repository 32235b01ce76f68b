"""deploy/gunicorn.conf.py, read by gunicorn's own Config.

gunicorn skips any top-level name of a config file that is not one of its settings,
silently: a misspelt setting (``no_control_socket``) simply does nothing. These
tests load the file the way gunicorn does and fail on every name it would skip.
"""

from __future__ import annotations

import datetime
import os
import runpy
import types
from pathlib import Path

import pytest
from gunicorn.app.base import Application
from gunicorn.config import Config

from testing.servers import GUNICORN_CONF


class _ConfigOnly(Application):
    """A gunicorn application that only loads a config file (never serves)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__()

    def load_config(self) -> None:
        self.namespace = self.load_config_from_module_name_or_filename(str(self.path))

    def load(self):  # pragma: no cover - never served
        raise NotImplementedError


def unknown_names(path: Path) -> tuple[Config, list[str]]:
    """The loaded Config and the file's top-level names gunicorn does not know."""
    app = _ConfigOnly(path)
    known = app.cfg.settings
    unknown = sorted(
        name
        for name, value in app.namespace.items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in known
    )
    return app.cfg, unknown


def test_every_name_in_the_config_file_is_a_gunicorn_setting():
    cfg, unknown = unknown_names(GUNICORN_CONF)

    assert unknown == [], f"gunicorn ignores these names in {GUNICORN_CONF.name}: {unknown}"
    # The values took: what the file says is what gunicorn runs with.
    assert cfg.control_socket_disable is True
    assert cfg.preload_app is True
    # sync by default, one thread each (docs/operations.md, "Worker class, measured")
    assert cfg.worker_class_str == "sync"
    assert cfg.threads == 1
    assert cfg.wsgi_app == "lithtrix.wsgi:application"
    assert cfg.logconfig_dict["loggers"]["gunicorn.access"]["level"] == "CRITICAL"


def test_gunicorn_builds_no_access_line_of_its_own(monkeypatch):
    """The app writes the access line (lithtrix.access). With logconfig_dict set,
    gunicorn's own logger would build each request's atoms only to drop them."""
    cfg, _unknown = unknown_names(GUNICORN_CONF)
    logger = cfg.logger_class(cfg)
    # logconfig_dict alone turns gunicorn's access logging on ...
    assert logger.access_log_enabled is True

    def no_atoms(*args):
        raise AssertionError("gunicorn built an access line")

    # ... yet the logger the file names never builds one.
    monkeypatch.setattr(logger, "atoms", no_atoms)
    logger.access(None, None, {}, datetime.timedelta(milliseconds=3))


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("no_control_socket = True", "no_control_socket"),
        ("worker_class_name = 'gthread'", "worker_class_name"),
        ("def post_fork_hook(server, worker):\n    pass", "post_fork_hook"),
    ],
)
def test_a_name_gunicorn_does_not_know_is_reported(tmp_path, line, name):
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(f"import os\n_private = 1\ndef post_fork(server, worker):\n    pass\n{line}\n")

    _cfg, unknown = unknown_names(path)

    # A known server hook, an import and a private name are fine; the misspelling is not.
    assert unknown == [name]


def test_an_empty_number_is_unset(monkeypatch):
    """As make serve's serve_check reads them: an empty variable takes the default
    (int('') would stop gunicorn with a traceback)."""
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the file sets defaults in it
    for name in ("WORKERS", "GUNICORN_WORKERS", "GUNICORN_TIMEOUT", "GUNICORN_MAX_REQUESTS"):
        os.environ[name] = ""
    os.environ.update(GUNICORN_WORKER_CLASS="gthread", GUNICORN_THREADS=" ")

    conf = runpy.run_path(str(GUNICORN_CONF))

    assert (conf["workers"], conf["threads"], conf["timeout"], conf["max_requests"]) == (
        4,
        4,
        30,
        10000,
    )
