"""A worker's own settings: named after the worker (EDA_<WORKER>_<SETTING>, --<setting>), never one of
eda's options or variables nor another worker's, parsed and kept within their bounds."""

import pytest

from eda import Setting, Settings, Worker
from eda.errors import ConfigError, DefinitionError
from eda.runtime.runner import Runner
from eda.testing import TestBus
from eda.worker_settings import check, options, variable_name


class Billing(Worker):
    name = "billing"
    batch = Setting(10, "Invoices per batch.", low=1, high=1000)
    timeout = Setting(2.5, "Seconds per call.", low=0.001, high=3600)
    label = Setting("acme", "Printed on invoices.")


class Mailing(Worker):
    name = "mail.out"
    timeout = Setting(1.0, "Seconds per mail.")


@pytest.fixture
def clean_env(monkeypatch):
    """No variable of these tests' workers is set, whatever the machine's environment holds."""
    for name in ("EDA_BILLING_BATCH", "EDA_BILLING_TIMEOUT", "EDA_BILLING_LABEL", "EDA_MAIL_OUT_TIMEOUT",
                 "EDA_BATCH", "EDA_TIMEOUT", "EDA_LABEL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_setting_reads_the_variable_named_after_its_worker(clean_env):
    clean_env.setenv("EDA_BILLING_BATCH", "50")
    clean_env.setenv("EDA_BATCH", "99")  # the old, shared name: not read any more
    assert Billing(Settings.from_env()).batch == 50
    assert Billing(Settings.from_env()).timeout == 2.5  # the default, where nothing is given


def test_the_variable_takes_the_worker_name_upper_cased_with_dashes_and_dots_as_underscores(clean_env):
    assert variable_name("payment", "gateway_url") == "EDA_PAYMENT_GATEWAY_URL"
    assert variable_name("order-audit.v2", "batch") == "EDA_ORDER_AUDIT_V2_BATCH"
    clean_env.setenv("EDA_MAIL_OUT_TIMEOUT", "7.5")
    assert Mailing(Settings.from_env()).timeout == 7.5


def test_two_workers_with_a_setting_of_one_name_read_a_variable_each(clean_env):
    clean_env.setenv("EDA_BILLING_TIMEOUT", "3")
    clean_env.setenv("EDA_MAIL_OUT_TIMEOUT", "4")
    assert (Billing(Settings.from_env()).timeout, Mailing(Settings.from_env()).timeout) == (3.0, 4.0)


def test_a_value_given_for_the_worker_wins_over_its_variable(clean_env):
    clean_env.setenv("EDA_BILLING_BATCH", "50")
    settings = Settings.from_env(worker_options={"billing": {"batch": "7"}, "mail.out": {"timeout": 9}})
    assert Billing(settings).batch == 7
    assert Billing(settings).timeout == 2.5  # another setting of the worker: not given, default
    assert Mailing(settings).timeout == 9.0  # given to its worker only


def test_worker_options_is_a_mapping_of_worker_to_settings():
    with pytest.raises(ConfigError, match="worker_options: a mapping of worker name to"):
        Settings(worker_options=(("batch", "7"),))  # the old (name, value) pairs
    assert Settings(worker_options={"billing": {"batch": 3}}).with_(namespace="x").worker_options == {
        "billing": {"batch": 3}}


@pytest.mark.parametrize("env, message", [
    ({"EDA_BILLING_BATCH": "0"}, "--batch (EDA_BILLING_BATCH): must be at least 1"),
    ({"EDA_BILLING_BATCH": "1001"}, "--batch (EDA_BILLING_BATCH): must be at most 1000"),
    ({"EDA_BILLING_TIMEOUT": "inf"}, "--timeout (EDA_BILLING_TIMEOUT): must be a finite number"),
    ({"EDA_BILLING_TIMEOUT": "nan"}, "--timeout (EDA_BILLING_TIMEOUT): must be a finite number"),
    ({"EDA_BILLING_BATCH": "ten"}, "--batch (EDA_BILLING_BATCH): not an integer"),
])
def test_a_value_out_of_bounds_is_one_line_when_the_worker_is_made(clean_env, env, message):
    for key, value in env.items():
        clean_env.setenv(key, value)
    with pytest.raises(ConfigError) as raised:
        Billing(Settings.from_env())
    assert str(raised.value).startswith(message)


def test_eda_worker_offers_the_bare_option_unless_two_named_workers_share_the_setting():
    assert options([Billing]) == {("billing", "batch"): "--batch", ("billing", "timeout"): "--timeout",
                                  ("billing", "label"): "--label"}
    shared = options([Billing, Mailing])
    assert shared[("billing", "timeout")] == "--billing-timeout"
    assert shared[("mail.out", "timeout")] == "--mail-out-timeout"
    assert shared[("billing", "batch")] == "--batch"  # declared by one of them: bare


def make_worker(worker_name, **settings):
    return type("W", (Worker,), {"name": worker_name, **settings})


@pytest.mark.parametrize("setting, theirs", [
    ("concurrency", "--concurrency (EDA_CONCURRENCY)"), ("prefetch", "--prefetch (EDA_PREFETCH)"),
    ("app", "--app (EDA_APP)"), ("help", "--help"), ("broker_url", "--broker-url (EDA_BROKER_URL)"),
])
def test_a_setting_taking_an_option_of_edas_is_a_definition_error_naming_both(setting, theirs):
    worker = make_worker("reports", **{setting: Setting(1, "Mine.")})
    option = "--" + setting.replace("_", "-")
    with pytest.raises(DefinitionError) as raised:
        check([worker])
    assert str(raised.value) == (f"worker 'reports': its setting {setting!r} would take {option}, which is eda's "
                                 f"option {theirs}; rename the setting")


def test_a_setting_whose_variable_is_edas_is_a_definition_error():
    with pytest.raises(DefinitionError, match="worker 'log': its setting 'level' would read EDA_LOG_LEVEL, which is "
                                              "eda's variable of --log-level"):
        check([make_worker("log", level=Setting("x"))])


def test_two_workers_whose_settings_would_share_a_variable_are_a_definition_error():
    with pytest.raises(DefinitionError, match="would both read EDA_A_B_C"):
        check([make_worker("a-b", c=Setting(1)), make_worker("a", b_c=Setting(1))])


def test_a_prefixed_option_equal_to_another_workers_option_is_a_definition_error():
    # a and b share "x" (--a-x, --b-x); c's own a_x would be --a-x too
    with pytest.raises(DefinitionError, match="would both take --a-x"):
        check([make_worker("a", x=Setting(1)), make_worker("b", x=Setting(1)), make_worker("c", a_x=Setting(1))])


def test_a_command_adds_its_own_options_to_those_a_setting_may_not_take():
    with pytest.raises(DefinitionError, match="would take --metrics-port"):
        check([make_worker("w", metrics_port=Setting(1))])
    with pytest.raises(DefinitionError, match="would take --verbose, which is eda's option --verbose"):
        check([make_worker("w", verbose=Setting(False))], framework_options=["--verbose", "-v"])


def test_worker_options_naming_a_worker_or_setting_that_is_not_there_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"worker_options: no worker 'biling' here \(workers: billing\)"):
        check([Billing], Settings(worker_options={"biling": {"batch": 1}}))
    with pytest.raises(ConfigError, match=r"worker 'billing' has no setting 'batches' \(its settings: batch, label, "
                                          r"timeout\)"):
        check([Billing], Settings(worker_options={"billing": {"batches": 1}}))


def test_runner_and_test_bus_refuse_a_colliding_setting_at_start(tmp_path):
    clashing = make_worker("reports", concurrency=Setting(1))
    settings = Settings(state_dir=tmp_path)
    with pytest.raises(DefinitionError, match="would take --concurrency"):
        Runner([clashing], settings)
    bus = TestBus(clashing, settings=settings)
    with pytest.raises(DefinitionError, match="would take --concurrency"):
        bus.__enter__()


def test_env_names_a_variable_of_ones_own_outside_edas_names(clean_env):
    class Vendor(Worker):
        name = "vendor"
        api_url = Setting("http://localhost", "The vendor's API.", env="ACME_API_URL")

    clean_env.setenv("ACME_API_URL", "https://api.acme.example")
    clean_env.setenv("EDA_VENDOR_API_URL", "https://ignored.example")
    assert Vendor(Settings.from_env()).api_url == "https://api.acme.example"
    with pytest.raises(DefinitionError, match="EDA_\\* variables are eda's"):
        Setting(1, env="EDA_CONCURRENCY")


def test_the_shops_settings_have_bounds(clean_env):
    from eda_shop.workers.payment import Payment

    clean_env.setenv("EDA_PAYMENT_BREAKER_FAIL_MAX", "0")
    with pytest.raises(ConfigError, match="--breaker-fail-max \\(EDA_PAYMENT_BREAKER_FAIL_MAX\\)"):
        Payment(Settings.from_env())


def test_both_payment_styles_read_the_payment_variables(clean_env):
    from eda_shop.workers.payment import Payment
    from eda_shop.workers.payment_async import AsyncPayment

    for key, value in (("EDA_PAYMENT_GATEWAY_URL", "http://gw:8080"), ("EDA_PAYMENT_GATEWAY_TIMEOUT", "7"),
                       ("EDA_PAYMENT_BREAKER_FAIL_MAX", "9"), ("EDA_PAYMENT_BREAKER_RESET_TIMEOUT", "11")):
        clean_env.setenv(key, value)
    for style in (Payment, AsyncPayment):
        worker = style(Settings.from_env())
        assert (worker.gateway_url, worker.gateway_timeout, worker.breaker_fail_max, worker.breaker_reset_timeout) == (
            "http://gw:8080", 7.0, 9, 11.0), style.__name__
    check([Payment])
    check([AsyncPayment])


class Archiving(Worker):
    name = "archiving"
    bucket = Setting(help="Where invoices are archived.", required=True)
    copies = Setting(type=int, required=True, low=1)


@pytest.mark.parametrize("given, problem", [
    ({}, "--bucket (EDA_ARCHIVING_BUCKET): worker 'archiving' requires a value for its setting 'bucket', "
         "and none was given"),
    ({"EDA_ARCHIVING_BUCKET": "", "EDA_ARCHIVING_COPIES": "2"}, "--bucket (EDA_ARCHIVING_BUCKET): worker "
                                                                "'archiving' requires a value"),
    ({"EDA_ARCHIVING_BUCKET": "  ", "EDA_ARCHIVING_COPIES": "2"}, "--bucket (EDA_ARCHIVING_BUCKET): worker "
                                                                  "'archiving' requires a value"),
    ({"EDA_ARCHIVING_BUCKET": "s3://b"}, "--copies (EDA_ARCHIVING_COPIES): worker 'archiving' requires a value "
                                         "for its setting 'copies', and none was given"),
])
def test_a_required_setting_given_no_value_is_a_start_error_under_runner_and_test_bus(
        clean_env, tmp_path, given, problem):
    # Given a worker with required settings, and only some of them set (an empty value counts as none)
    for name in ("EDA_ARCHIVING_BUCKET", "EDA_ARCHIVING_COPIES"):
        clean_env.delenv(name, raising=False)
    for name, value in given.items():
        clean_env.setenv(name, value)
    settings = Settings.from_env(state_dir=tmp_path)
    # When it is started by a Runner or a TestBus, or made by hand
    # Then the start is refused with one line naming the option and the variable
    for start in (lambda: Runner([Archiving], settings), TestBus(Archiving, settings=settings).__enter__,
                  lambda: Archiving(settings).bucket + str(Archiving(settings).copies)):
        with pytest.raises(ConfigError) as refused:
            start()
        assert str(refused.value).startswith(problem) and "\n" not in str(refused.value)


def test_a_required_setting_given_by_options_or_its_variable_has_that_value(clean_env, tmp_path):
    clean_env.delenv("EDA_ARCHIVING_COPIES", raising=False)
    clean_env.setenv("EDA_ARCHIVING_BUCKET", "s3://from-the-variable")
    with TestBus(Archiving, settings=Settings.from_env(state_dir=tmp_path),
                 options={"archiving": {"copies": 2}}) as bus:
        worker = bus.worker("archiving")
        assert (worker.bucket, worker.copies) == ("s3://from-the-variable", 2)
    with TestBus(Archiving, settings=Settings(state_dir=tmp_path),
                 options={"archiving": {"bucket": "s3://given", "copies": 3}}) as bus:
        assert (bus.worker("archiving").bucket, bus.worker("archiving").copies) == ("s3://given", 3)


def test_a_required_setting_with_a_default_is_a_definition_error():
    with pytest.raises(DefinitionError, match=r"Setting\('x', required=True\): a required setting has no default"):
        Setting("x", required=True)


def test_a_test_bus_reads_no_variable_of_the_shell_unless_given_settings_from_the_environment(clean_env):
    # Given a shell that exports a worker's setting
    clean_env.setenv("EDA_BILLING_BATCH", "50")
    # When a TestBus runs that worker with its default settings, or with settings built by hand
    # Then the worker has its default: what the shell exports does not change a test
    with TestBus(Billing) as bus:
        assert bus.worker("billing").batch == 10
    assert Billing(Settings()).batch == 10
    # And settings read from the environment read the worker's variable too, as eda worker's do
    assert Billing(Settings.from_env()).batch == 50
