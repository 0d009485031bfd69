"""eda's benchmark suite: eda beside raw kombu on the same broker (run ``python -m benchmarks``)."""
