"""Named workers (``payment``, ``inventory``, ``shipping``) and the runtime that runs them."""
