"""A worker's own settings under `eda worker` on a real broker: `--<setting>` and EDA_<WORKER>_<SETTING>
reach that worker alone, eda's options stay eda's, and a setting taking one of them stops the start."""

import pytest

from tests.support import handled

pytestmark = pytest.mark.integration

APP = {"EDA_APP": "tests.integration.settings_app"}
CLASH = ("error: worker 'clashing': its setting 'concurrency' would take --concurrency, which is eda's option "
         "--concurrency (EDA_CONCURRENCY); rename the setting")


@pytest.fixture
def app(app_queues):
    app_queues("reports", "audits", "clashing", "archives")
    return APP


def settings_logged(worker, name) -> dict:
    return worker.wait_for_log(lambda r: r.get("message") == "settings" and r.get("worker") == name,
                               what=f"{name}'s settings")


def test_a_setting_given_to_eda_worker_reaches_the_worker_while_concurrency_stays_edas(eda, app):
    # Given the old shared variables set too, when reports starts with its option and its own variable
    worker = eda.worker("reports", "--batch=7", "--concurrency=3", EDA_REPORTS_TIMEOUT="9", EDA_BATCH="99",
                        EDA_TIMEOUT="99", **app)
    # then the worker has them, and eda runs it at the concurrency given to eda
    logged = settings_logged(worker, "reports")
    assert (logged["batch"], logged["timeout"], logged["concurrency"]) == (7, 9.0, 3)
    consuming = worker.wait_for_log(lambda r: r.get("message") == "consuming")
    assert consuming["concurrency"] == 3
    eda.publish("report-requested", {"reportId": "r-1"}, **app)
    worker.wait_for_log(handled("report.requested", worker="reports"))


def test_a_variable_named_after_the_worker_sets_it(eda, app):
    worker = eda.worker("reports", EDA_REPORTS_BATCH="12", EDA_CONCURRENCY="2", **app)
    logged = settings_logged(worker, "reports")
    assert (logged["batch"], logged["timeout"], logged["concurrency"]) == (12, 2.5, 2)


def test_two_workers_declaring_one_setting_get_a_prefixed_option_each(eda, app):
    worker = eda.worker("reports", "audits", "--reports-timeout=4", "--batch=3", EDA_AUDITS_TIMEOUT="5", **app)
    assert (settings_logged(worker, "reports")["timeout"], settings_logged(worker, "reports")["batch"]) == (4.0, 3)
    assert settings_logged(worker, "audits")["timeout"] == 5.0
    # the bare option would be shared by both: it is not offered
    code, output = eda.run("worker", "reports", "audits", "--timeout", "3", **app)
    assert code == 2 and output.startswith("error: No such option '--timeout'"), output
    assert "'--audits-timeout', '--reports-timeout'" in output  # click names the options there are
    assert output.endswith("(see 'eda worker reports audits --help')")  # the help that lists those options
    assert len(output.splitlines()) == 1, output


def test_help_without_a_name_lists_the_apps_workers_and_where_their_options_are(eda, app):
    code, output = eda.run("worker", "--help", **app)
    text = " ".join(output.split())
    assert code == 0, output
    assert "Workers (`eda worker NAME --help` shows a worker's own options):" in text
    assert "reports" in text and "audits" in text and "payment" not in text  # the app's workers, not the shop's


def test_help_shows_each_setting_of_the_named_worker_with_its_variable(eda, app):
    code, output = eda.run("worker", "reports", "--help", **app)
    text = " ".join(output.split())
    assert code == 0 and "--batch INTEGER" in text and "EDA_REPORTS_BATCH" in text and "EDA_REPORTS_TIMEOUT" in text
    code, output = eda.run("worker", "reports", "audits", "--help", **app)
    text = " ".join(output.split())
    assert "--reports-timeout NUMBER" in text and "--audits-timeout NUMBER" in text and "--timeout" not in text


@pytest.mark.parametrize("names", [("clashing",), ("reports", "clashing")])
def test_a_setting_taking_an_option_of_edas_is_a_start_error_naming_both(eda, app, broker, namespace, names):
    code, output = eda.run("worker", *names, **app)
    assert (code, output) == (2, CLASH)
    assert not broker.exists(f"{namespace}.clashing") and not broker.exists(f"{namespace}.reports")  # nothing declared


@pytest.mark.parametrize("given", [{}, {"EDA_ARCHIVES_BUCKET": ""}])
def test_a_required_setting_given_no_value_is_a_one_line_start_error(eda, app, broker, namespace, given):
    # Given a worker whose setting is required, when it is started with no value for it (or an empty one)
    code, output = eda.run("worker", "archives", **given, **app)
    # Then the start is refused in one line naming the option and the variable, nothing declared
    assert (code, output) == (2, "error: --bucket (EDA_ARCHIVES_BUCKET): worker 'archives' requires a value for "
                                 "its setting 'bucket', and none was given")
    assert not broker.exists(f"{namespace}.archives")
    # And --help says it is required; given, the worker has it
    code, output = eda.run("worker", "archives", "--help", **app)
    assert code == 0 and "Where reports are archived. [required]" in " ".join(output.split()), output
    worker = eda.worker("archives", "--bucket=s3://reports", **app)
    assert settings_logged(worker, "archives")["bucket"] == "s3://reports"
