"""Adapters over the operating system: the wall clock and id generation."""
