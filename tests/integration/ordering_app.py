"""A test project for the ordering tests (``EDA_APP=tests.integration.ordering_app``): an account worker
ordered by ``account_id`` that appends each event it handled to a file shared by its instances.

Environment: ``ORDERING_RECORD`` (the file: one line ``pid account seq`` per handled event, written in
one ``write``), ``ORDERING_MAX_SLEEP`` (seconds, a random delay per event), ``ORDERING_SLEEP`` (seconds,
a fixed delay per event), ``ORDERING_FAIL_RATE`` (the
chance that an event fails transiently, at most once per event and process) and ``ORDERING_POISON``
(``account:seq`` of an event that always fails).
"""

import os
import random
import time

from marshmallow import fields

from eda import EventData, Worker, contract, handles
from eda.fields import Id


@contract("account.changed", description="An account's balance changed.", key="account_id")
class AccountChanged(EventData):
    account_id = Id(required=True)
    seq = fields.Integer(required=True, strict=True)


class Accounts(Worker):
    name = "accounts"
    description = "Applies account changes in order per account (a test worker)."
    ordered_by = "account_id"

    def setup(self):
        path = os.environ.get("ORDERING_RECORD")
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if path else None
        self.max_sleep = float(os.environ.get("ORDERING_MAX_SLEEP", "0"))
        self.sleep = float(os.environ.get("ORDERING_SLEEP", "0"))
        self.fail_rate = float(os.environ.get("ORDERING_FAIL_RATE", "0"))
        self.poison = os.environ.get("ORDERING_POISON", "")
        self.failed = set()

    def teardown(self):
        if self.fd is not None:
            os.close(self.fd)

    @handles("account.changed")
    def apply(self, event, ctx):
        account, seq = event.data["account_id"], event.data["seq"]
        if self.max_sleep:
            time.sleep(random.uniform(0, self.max_sleep))
        if self.sleep:
            time.sleep(self.sleep)
        if f"{account}:{seq}" == self.poison:
            raise RuntimeError(f"{account}:{seq} always fails")
        if self.fail_rate and (account, seq) not in self.failed and random.random() < self.fail_rate:
            self.failed.add((account, seq))
            raise RuntimeError(f"transient failure of {account}:{seq}")
        if self.fd is not None:
            os.write(self.fd, f"{os.getpid()} {account} {seq}\n".encode())
