"""Producers: confirmed publishing of events (``Publisher``) and the sample order producer."""
