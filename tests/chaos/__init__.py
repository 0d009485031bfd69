"""A Jepsen-style chaos run of the shop: three RabbitMQ nodes, PostgreSQL and the shop's workers, each in a
network namespace of its own, while a nemesis cuts and heals the network and pauses and restarts
processes; a checker then proves from the run's history that no confirmed order was lost, stuck or
doubled. ``python -m tests.chaos --help``; README, "Reliability: partitions and pauses".

Modules: network (namespaces, bridge, cuts), nodes (the RabbitMQ cluster), postgres, processes (workers,
gateway, clients), gateway, load, nemesis (the seeded schedule and its applier), observe, checker, report.
"""
