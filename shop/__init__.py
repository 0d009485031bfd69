"""eda_shop: eda's reference shop, e-commerce order processing built on eda's public API alone.

An order is placed (``order.placed``), payment charges it, inventory reserves its stock, shipping ships
it; an order whose stock runs out is cancelled and refunded; the ledger keeps each user's balance in
order. The code lives in the repository's ``contracts/``, ``workers/`` and ``producers/`` folders,
installed as ``eda_shop.contracts``, ``eda_shop.workers`` and ``eda_shop.producers`` (``shop/pyproject.toml``).
"""
