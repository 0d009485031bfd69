"""A test project for the worker-settings tests (``EDA_APP=tests.integration.settings_app``): two workers
sharing a setting name (``timeout``), one whose setting would take eda's ``--concurrency``, and one
with a required setting (``archives``: ``bucket``). Each
logs the values it was given when it starts (``settings``), as a user would look at them."""

from eda import EventData, Setting, Worker, contract, handles
from eda.fields import Id


@contract("report.requested", description="A report should be made (a test event).")
class ReportRequested(EventData):
    report_id = Id(required=True)


class LogsItsSettings(Worker):
    """A team's own base class: no name, no handlers."""

    def setup(self):
        values = {s: getattr(self, s) for s in ("batch", "timeout", "bucket") if hasattr(type(self), s)}
        self.log.info("settings", extra={"worker": self.name, "concurrency": self.settings.concurrency, **values})


class Reports(LogsItsSettings):
    name = "reports"
    batch = Setting(10, "Reports per batch.", low=1)
    timeout = Setting(2.5, "Seconds per report.")

    @handles("report.requested")
    def make(self, event, ctx):
        pass


class Audits(LogsItsSettings):
    name = "audits"
    timeout = Setting(1.0, "Seconds per audit.")

    @handles("report.requested")
    def audit(self, event, ctx):
        pass


class Clashing(Worker):
    name = "clashing"
    concurrency = Setting(1, "Reports at once (takes eda's --concurrency: refused at start).")

    @handles("report.requested")
    def make(self, event, ctx):
        pass


class Archives(LogsItsSettings):
    name = "archives"
    bucket = Setting(help="Where reports are archived.", required=True)

    @handles("report.requested")
    def archive(self, event, ctx):
        pass


WORKERS = ("reports", "audits", "clashing", "archives")
