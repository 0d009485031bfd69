"""Sagas (process managers): flows that span several events and time, each instance's state kept in the
worker's store and moved exactly once per event (eda.sagas.definition, eda.sagas.running,
eda.sagas.table). ``from eda import Saga, starts, handles``.
"""

from eda.sagas.definition import Saga, starts
from eda.sagas.table import Applied, Instances, Row

__all__ = ["Saga", "starts", "Instances", "Row", "Applied"]
