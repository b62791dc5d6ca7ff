"""`make bench`: measures the stack on this machine and writes bench/out/REPORT.md + PNG plots.

Medians and ratios taken side by side in one run (the machines are shared and noisy); every
table says what it measured with which settings. Parts: asr, tts, agent (`python -m bench asr`).
"""
