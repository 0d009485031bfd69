"""Publishing events, confirmed: the pipelined ``Publisher``, the ``Producer`` API, ``eda publish``'s batches."""
