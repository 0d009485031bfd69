"""The reference shop's event contracts; importing the package registers them with eda (the shop's
``eda.contracts`` entry point names it, as any team's package would be named)."""

from eda_shop.contracts.events import CONTRACTS

__all__ = ["CONTRACTS"]
