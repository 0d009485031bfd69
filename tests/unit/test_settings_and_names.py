"""Settings from the environment, names derived in one place, and passwords never shown."""

import pytest
from click.testing import CliRunner

from cli import main
from eda import names
from eda.errors import ConfigError
from eda.settings import SPECS, Settings, redact_url


def test_settings_come_from_eda_variables_with_explicit_values_winning():
    s = Settings.from_env({"EDA_NAMESPACE": "shop", "EDA_CONCURRENCY": "8", "EDA_PREFETCH": "2"}, namespace="other")
    assert s.namespace == "other" and s.concurrency == 8
    assert s.effective_prefetch == 8  # never below the concurrency


@pytest.mark.parametrize("env, message", [
    ({"EDA_PREFETCH": "many"}, "--prefetch (EDA_PREFETCH): not a number"),
    ({"EDA_CONCURRENCY": "0"}, "--concurrency"),
    ({"EDA_LOG_FORMAT": "xml"}, "--log-format (EDA_LOG_FORMAT)"),
    ({"EDA_RETRY_DELAYS": "1s,soon"}, "--retry-delays (EDA_RETRY_DELAYS): not a duration"),
])
def test_a_bad_setting_is_a_config_error_naming_option_and_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_retry_delays_parse_user_durations():
    assert Settings.from_env({"EDA_RETRY_DELAYS": "1s,1s,2s"}).retry_delays_ms == (1000, 1000, 2000)
    assert Settings.from_env({"EDA_RETRY_DELAYS": "500ms, 2m,1h"}).retry_delays_ms == (500, 120_000, 3_600_000)
    assert Settings.from_env({"EDA_RETRY_DELAYS": ""}).retry_delays_ms == ()


def test_passwords_are_redacted():
    assert redact_url("amqp://user:pa55@host:5672/vh") == "amqp://user:***@host:5672/vh"
    assert redact_url("amqp://host//") == "amqp://host//"
    assert "guest:guest" not in Settings().safe_broker_url


def test_names_follow_the_wire_contract():
    assert names.events_exchange("shop") == "shop.events"
    assert names.dead_letter_exchange("shop") == "shop.dlx"
    assert names.work_queue("shop", "payment") == "shop.payment"
    assert names.dead_letter_queue("shop", "payment") == "shop.payment.dlq"
    assert names.retry_queue("shop", "payment", 120_000) == "shop.payment.retry.2m"
    assert names.retry_queue("shop", "payment", 1500) == "shop.payment.retry.1500ms"


def test_every_setting_is_an_option_with_its_variable_in_help():
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    for name in ("broker_url", "namespace", "state_dir", "log_format", "log_level", "prefetch", "concurrency"):
        assert SPECS[name].option in result.output and SPECS[name].env in result.output
    assert "guest:guest" not in result.output


def test_help_shows_numbers_as_numbers():
    output = CliRunner().invoke(main, ["worker", "--help"]).output
    assert "--prefetch INTEGER" in output and "--shutdown-timeout NUMBER" in output
    assert "--metrics-port PORT" in output


def test_a_workers_own_settings_are_offered_only_when_it_is_named():
    payment = CliRunner().invoke(main, ["worker", "payment", "--help"]).output
    for option, variable in (("--payment-gateway-url TEXT", "EDA_PAYMENT_GATEWAY_URL"),
                             ("--breaker-fail-max INTEGER", "EDA_BREAKER_FAIL_MAX"),
                             ("--breaker-reset-timeout NUMBER", "EDA_BREAKER_RESET_TIMEOUT"),
                             ("--gateway-timeout NUMBER", "EDA_GATEWAY_TIMEOUT")):
        assert option in payment and variable in payment
    assert "--stock-threshold" not in payment
    shipping = CliRunner().invoke(main, ["worker", "--concurrency", "2", "shipping", "--help"]).output
    assert "--payment-gateway-url" not in shipping and "--stock-threshold" not in shipping
    assert "--stock-threshold INTEGER" in CliRunner().invoke(main, ["worker", "inventory", "--help"]).output


def test_an_option_of_another_worker_is_refused():
    result = CliRunner().invoke(main, ["worker", "shipping", "--stock-threshold", "3"])
    assert result.exit_code == 2 and "No such option '--stock-threshold'" in result.output


def test_a_bad_value_of_a_workers_own_setting_is_a_one_line_error_at_start():
    result = CliRunner().invoke(main, ["worker", "inventory"], env={"EDA_STOCK_THRESHOLD": "lots"})
    assert result.exit_code == 2
    assert result.output == "error: --stock-threshold (EDA_STOCK_THRESHOLD): not an integer: 'lots'\n"
