"""Publishing events, confirmed: the pipelined ``Publisher``, and requests awaiting their replies (the
``Producer`` API over it is eda.producer; ``eda publish``'s batches eda.commands.publish)."""
