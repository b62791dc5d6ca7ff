"""The reliability harness (`make soak`): fuzz, soak, faults, bombs and traversal against services
it starts on loopback; writes bench/out/RELIABILITY.md. Short versions run in tests/soak."""
