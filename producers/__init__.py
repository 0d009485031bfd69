"""The reference shop's producers: the order producer (an example of the Producer API) and `eda demo`'s
sample stock and orders."""
