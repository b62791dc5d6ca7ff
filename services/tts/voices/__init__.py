"""Voices: reference clips and their engine conditionals, in Redis or a directory, LRU-cached."""
