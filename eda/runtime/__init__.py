"""Running workers: the I/O loop (``Runner``), consumers, settlement of deliveries, failures, threads."""
