"""A worker's own settings: parsed from its option or EDA_* variable, and kept within their bounds."""

import pytest

from eda import Setting, Settings, Worker
from eda.errors import ConfigError


class Billing(Worker):
    name = "billing-settings-test"
    batch = Setting(10, "Invoices per batch.", low=1, high=1000)
    timeout = Setting(2.5, "Seconds per call.", low=0.001, high=3600)
    label = Setting("acme", "Printed on invoices.")


def billing(monkeypatch, **env) -> Billing:
    for name in ("EDA_BATCH", "EDA_TIMEOUT", "EDA_LABEL"):
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Billing(Settings())


def test_defaults_and_variables_are_read(monkeypatch):
    assert (billing(monkeypatch).batch, billing(monkeypatch).timeout) == (10, 2.5)
    assert billing(monkeypatch, EDA_BATCH="50", EDA_LABEL="x").batch == 50


def test_an_option_wins_over_the_variable(monkeypatch):
    monkeypatch.setenv("EDA_BATCH", "50")
    assert Billing(Settings(worker_options=(("batch", "7"),))).batch == 7


@pytest.mark.parametrize("env, message", [
    ({"EDA_BATCH": "0"}, "--batch (EDA_BATCH): must be at least 1"),
    ({"EDA_BATCH": "1001"}, "--batch (EDA_BATCH): must be at most 1000"),
    ({"EDA_TIMEOUT": "inf"}, "--timeout (EDA_TIMEOUT): must be a finite number"),
    ({"EDA_TIMEOUT": "nan"}, "--timeout (EDA_TIMEOUT): must be a finite number"),
    ({"EDA_BATCH": "ten"}, "--batch (EDA_BATCH): not an integer"),
])
def test_a_value_out_of_bounds_is_one_line_when_the_worker_is_made(monkeypatch, env, message):
    with pytest.raises(ConfigError) as raised:
        billing(monkeypatch, **env)
    assert str(raised.value).startswith(message)


def test_the_shops_settings_have_bounds(monkeypatch):
    from eda_shop.workers.payment import Payment

    monkeypatch.setenv("EDA_BREAKER_FAIL_MAX", "0")
    with pytest.raises(ConfigError, match="--breaker-fail-max"):
        Payment(Settings())
