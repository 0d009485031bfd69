"""The one error tree of eda. An expected error carries the one-line message a user sees."""


class EdaError(Exception):
    """Base of every error eda raises on purpose; ``str(err)`` is the message for the user."""

    exit_code = 1


class ConfigError(EdaError):
    """A setting or CLI argument is wrong."""

    exit_code = 2


class UnknownWorker(ConfigError):
    """No worker is registered under that name."""


class UnknownEvent(ConfigError):
    """No contract is registered under that event name or type."""


class DefinitionError(ConfigError):
    """A worker or contract is defined wrongly: a reserved handler name, an event registered twice."""


class QueueMismatch(ConfigError):
    """A queue exists with other arguments than eda declares (e.g. classic where quorum is asked for)."""


class PluginMissing(ConfigError):
    """A RabbitMQ plugin eda needs for what it was asked is not enabled (the consistent-hash exchange)."""


class SetupFailed(EdaError):
    """A worker's ``setup()`` raised: the worker cannot start (exit 1, or the code of the eda error it
    raised; another start may succeed). A ``ConfigError`` from ``setup()`` is not wrapped: it is how a
    worker refuses a bad setting (exit 2)."""


class NotFound(EdaError):
    """What a command works on is not on the broker: a queue not declared, an event not in a queue."""


class ContractError(EdaError):
    """An event does not follow its contract (not JSON, not a CloudEvent, data invalid)."""

    def __init__(self, message, fields=None):
        super().__init__(message)
        self.fields = fields or {}


class BrokerUnavailable(EdaError):
    """The broker cannot be reached, or the connection to it was lost."""

    exit_code = 3


class StoreUnavailable(EdaError):
    """The state database cannot be reached, or the connection to it was lost: a transient failure of
    the event being handled (retried, then dead-lettered), never the worker's."""


class AccessRefused(ConfigError):
    """The broker refused the user name or password: retrying cannot help."""


class PublishError(EdaError):
    """The broker did not take responsibility for an event (nack, return, lost connection)."""

    exit_code = 4


class Unroutable(PublishError):
    """An event was routed to no queue (returned by the broker under ``mandatory``)."""


class RequestTimeout(EdaError):
    """No reply to a request came within the requester's timeout (no worker took it, or none in time)."""

    exit_code = 5


class RequestFailed(EdaError):
    """The worker that took a request failed it for good (dead-lettered) and said why in its reply."""

    exit_code = 6


class HandlerError(EdaError):
    """Base for errors a handler raises on purpose."""


class PermanentError(HandlerError):
    """Raised by a handler when retrying cannot help: the event goes to the DLQ at once."""


class Expired(PermanentError):
    """An event past its ``eda-expires-at`` (a request whose requester stopped waiting): dead-lettered
    unhandled, since whoever wanted it handled gave up on it."""


class ScheduleError(ConfigError, PermanentError):
    """A due time eda cannot take (a naive datetime, both ``at`` and ``delay``), or a recurring schedule
    defined wrongly (a bad cron expression): the same every time, so a handler's event that raises it is
    dead-lettered at once, and a command exits 2."""


class NoOutbox(EdaError):
    """A command that only reads the outbox found none where the settings say (a SQLite file never made:
    no application nor relay used it, or EDA_STATE_DIR is not theirs)."""


class NotScheduled(EdaError):
    """No scheduled event with that id is waiting: it was published or cancelled already, or is unknown."""


class SagaConflict(EdaError):
    """A saga instance's state kept changing under an event (other copies or events of the same instance
    handled at the same moment elsewhere): a transient failure, retried like any other."""


class SagaStateError(PermanentError):
    """A saga handler left its instance's state invalid (a value its fields refuse), or the event names
    no instance (its data lacks the saga's correlation field): the same at every attempt."""
