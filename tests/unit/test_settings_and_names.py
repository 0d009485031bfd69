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


@pytest.mark.parametrize("env, message", [
    ({"EDA_PREFETCH": "65536"}, "--prefetch (EDA_PREFETCH): must be at most 65535 (basic.qos carries a 16-bit count)"),
    ({"EDA_HEARTBEAT": "70000"}, "--heartbeat (EDA_HEARTBEAT): must be at most 65535"),
    ({"EDA_CONCURRENCY": "1001"}, "--concurrency (EDA_CONCURRENCY): must be at most 1000"),
    ({"EDA_DELIVERY_LIMIT": str(2**31)}, "--delivery-limit (EDA_DELIVERY_LIMIT): must be at most 2147483647"),
    ({"EDA_SHUTDOWN_TIMEOUT": "inf"}, "--shutdown-timeout (EDA_SHUTDOWN_TIMEOUT): must be a finite number"),
    ({"EDA_RECONNECT_WINDOW": "1e300"}, "--reconnect-window (EDA_RECONNECT_WINDOW): must be at most 31536000"),
    ({"EDA_RETRY_DELAYS": "1s,1194h"}, "--retry-delays (EDA_RETRY_DELAYS): '1194h' is too long a delay"),
    ({"EDA_METRICS_ADDRESS": "my host"}, "--metrics-address (EDA_METRICS_ADDRESS): 'my host' is not an IP"),
])
def test_a_number_the_wire_or_the_runtime_cannot_take_is_refused_at_start(env, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert str(raised.value).startswith(message)


def test_the_largest_values_are_taken():
    s = Settings.from_env({"EDA_PREFETCH": "65535", "EDA_HEARTBEAT": "65535", "EDA_CONCURRENCY": "1000",
                           "EDA_RETRY_DELAYS": "1193h", "EDA_METRICS_ADDRESS": "::1"})
    assert s.prefetch == 65535 and s.retry_delays_ms == (1193 * 3_600_000,) and s.metrics_address == "::1"


@pytest.mark.parametrize("namespace", ["eda", "shop-prod", "team_a.orders", "x:1", "N" * 100])
def test_a_namespace_of_letters_digits_and_separators_up_to_100_is_taken(namespace):
    assert Settings.from_env({"EDA_NAMESPACE": namespace}).namespace == namespace
    longest = names.retry_queue(namespace, "w" * 130, names.MAX_DELAY_MS)  # the longest suffix eda adds
    assert len(longest.encode()) <= names.MAX_NAME_BYTES


@pytest.mark.parametrize("namespace, message", [
    ("n" * 101, "101 characters is too long; at most 100"),
    ("amq", "reserved by RabbitMQ"), ("amq.shop", "reserved by RabbitMQ"),
    ("shop prod", "is not a namespace"), ("-shop", "is not a namespace"), ("shöp", "is not a namespace"),
    ("a/b", "is not a namespace"),
])
def test_a_namespace_that_cannot_name_every_queue_is_refused(namespace, message):
    with pytest.raises(ConfigError, match="--namespace") as raised:
        Settings.from_env({"EDA_NAMESPACE": namespace})
    assert message in str(raised.value)


def test_a_derived_name_over_255_bytes_is_a_config_error():
    assert names.work_queue("shop", "w" * 250) == "shop." + "w" * 250
    with pytest.raises(ConfigError, match="AMQP names hold at most 255"):
        names.work_queue("shop", "w" * 251)
    with pytest.raises(ConfigError):
        names.dead_letter_queue("shop", "é" * 124)  # 133 characters, 257 bytes


SECRET_URLS = ["amqp://guest:SECRETPW#x@127.0.0.1:5672//", "amqp://guest:SECRETPW?@127.0.0.1:5672//",
               "amqp://guest:SECRET/PW@127.0.0.1:5672//", "amqp://guest:1234/SECRETPW@127.0.0.1:5672//",
               "amqp://guest:SECRET;PW@127.0.0.1:5672//", "amqp://guest:SE[CRETPW@127.0.0.1:5672//",
               "SECRETPW:x@127.0.0.1"]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_a_url_that_cannot_be_parsed_is_refused_without_any_of_it(url):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"EDA_BROKER_URL": url})
    message = str(raised.value)
    assert message.startswith("--broker-url (EDA_BROKER_URL): not a broker URL") and "percent-encode" in message
    assert "SECRET" not in message and "PW" not in message and "127.0.0.1" not in message


@pytest.mark.parametrize("url", SECRET_URLS)
def test_redaction_never_shows_a_url_it_cannot_parse(url):
    assert "SECRET" not in redact_url(url)


def test_percent_encoded_passwords_and_failover_lists_are_taken_and_redacted():
    s = Settings.from_env({"EDA_BROKER_URL": "amqp://guest:SE%23CR%2FET%3B@h1:5672//;amqp://u:PW2@h2//"})
    assert s.safe_broker_url == "amqp://guest:***@h1:5672//;amqp://u:***@h2//"
    assert redact_url("amqp://user:pa@ss@host//") == "amqp://user:***@host//"


def test_help_shows_numbers_as_numbers():
    output = CliRunner().invoke(main, ["worker", "--help"]).output
    assert "--prefetch INTEGER" in output and "--shutdown-timeout NUMBER" in output
    assert "--metrics-port PORT" in output


def test_worker_help_lists_the_workers_saying_which_are_sagas_and_which_are_ordered():
    text = " ".join(CliRunner().invoke(main, ["worker", "--help"]).output.split())
    assert "order-saga [saga] Follows each order" in text
    assert "ledger [ordered by user_id] Keeps each user's" in text
    assert "shipping Ships reserved orders." in text


def test_a_workers_own_settings_are_offered_only_when_it_is_named():
    payment = CliRunner().invoke(main, ["worker", "payment", "--help"]).output
    for option, variable in (("--gateway-url TEXT", "EDA_PAYMENT_GATEWAY_URL"),
                             ("--breaker-fail-max INTEGER", "EDA_PAYMENT_BREAKER_FAIL_MAX"),
                             ("--breaker-reset-timeout NUMBER", "EDA_PAYMENT_BREAKER_RESET_TIMEOUT"),
                             ("--gateway-timeout NUMBER", "EDA_PAYMENT_GATEWAY_TIMEOUT")):
        assert option in payment and variable in " ".join(payment.split()), option
    assert "--stock-threshold" not in payment
    shipping = CliRunner().invoke(main, ["worker", "--concurrency", "2", "shipping", "--help"]).output
    assert "--gateway-url" not in shipping and "--stock-threshold" not in shipping
    inventory = CliRunner().invoke(main, ["worker", "inventory", "--help"]).output
    assert "--stock-threshold INTEGER" in inventory and "EDA_INVENTORY_STOCK_THRESHOLD" in inventory


def test_an_option_of_another_worker_is_refused():
    result = CliRunner().invoke(main, ["worker", "shipping", "--stock-threshold", "3"])
    assert result.exit_code == 2 and "No such option '--stock-threshold'" in result.output


def test_a_bad_value_of_a_workers_own_setting_is_a_one_line_error_at_start():
    result = CliRunner().invoke(main, ["worker", "inventory"], env={"EDA_INVENTORY_STOCK_THRESHOLD": "lots"})
    assert result.exit_code == 2
    assert result.output == "error: --stock-threshold (EDA_INVENTORY_STOCK_THRESHOLD): not an integer: 'lots'\n"
    result = CliRunner().invoke(main, ["worker", "inventory", "--stock-threshold", "-1"])
    assert (result.exit_code, result.output) == (
        2, "error: --stock-threshold (EDA_INVENTORY_STOCK_THRESHOLD): must be at least 0\n")


def test_the_settings_repr_shows_no_password():
    # Given settings holding the broker's and the database's passwords
    settings = Settings(broker_url="amqp://shop:s3cret@rabbit:5672//",
                        database_url="postgresql://shop:s3cret@db:5432/shop")
    # When they are shown (a test failure, a debug line)
    shown = repr(settings)
    # Then neither password is, and the rest is
    assert "s3cret" not in shown
    assert "amqp://shop:***@rabbit:5672//" in shown and "postgresql://shop:***@db:5432/shop" in shown


@pytest.mark.parametrize("url, shown", [
    ("postgresql://shop@db/shop?password=s3cret&sslmode=require", "postgresql://shop@db/shop?password=***&sslmode=require"),
    ("host=db user=shop password=s3cret dbname=shop", "host=db user=shop password=*** dbname=shop"),
    ("host=db password='s3 cret' user=shop", "host=db password=*** user=shop"),
])
def test_a_database_password_is_masked_wherever_the_url_puts_it(url, shown):
    settings = Settings(database_url=url)
    assert settings.safe_database_url == shown
    assert "s3" not in repr(settings)


@pytest.mark.parametrize("content, problem", [
    ("", "(the file is empty)"),
    ("s3cret garbage", "(it does not start with amqp://"),
])
def test_a_broker_url_file_without_a_url_names_the_file_not_the_variable(tmp_path, content, problem):
    path = tmp_path / "broker-url"
    path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        Settings(broker_url_file=str(path))
    message = str(refused.value)
    assert message.startswith(f"--broker-url-file (EDA_BROKER_URL_FILE) {path}: not a broker URL like ")
    assert problem in message and "s3cret" not in message
