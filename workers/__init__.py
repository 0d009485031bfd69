"""The reference shop's workers: payment (with its gateway client and simulation), inventory, shipping."""
