"""Loading the app (`--app` / EDA_APP): a module that cannot be imported is a one-line ConfigError, said
at every call that needs the app, never swallowed by the first one into an empty app."""

import uuid

import pytest

from eda import app, discovery
from eda.contracts import registry
from eda.errors import ConfigError


@pytest.fixture
def fresh_app(monkeypatch, tmp_path):
    """No app loaded yet in this process, and a folder on the path for the test's modules."""
    monkeypatch.setattr(app, "_loaded", None)
    monkeypatch.setattr(app, "_app", None)
    monkeypatch.setattr(discovery, "_from", None)
    monkeypatch.setattr(discovery, "_workers", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_an_app_module_that_fails_to_import_is_an_error_at_every_call(fresh_app):
    # Given an app module that raises as it is imported
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (fresh_app / f"{name}.py").write_text("raise ImportError('no module named stripe', name='stripe')\n")
    app.use_app(name)
    # When the workers are listed, and then an event type is looked up, as two commands of one process would
    for call in (discovery.discover, lambda: registry.get(f"{name}.requested")):
        # Then each call says why the app cannot be loaded, not that nothing is known
        with pytest.raises(ConfigError, match=f"--app \\(EDA_APP\\): importing '{name}' failed: ImportError"):
            call()

