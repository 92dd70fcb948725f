"""Benchmarks: how close stocksync runs to the floor that Katana's and Shopify's rate limits set.

`python -m bench [--quick | --smoke]` builds a seeded catalogue in the simulators, runs the real
daemon against them with explicit (uniformly scaled) rate limits, and prints one table: each
figure, its floor, the ratio, the target and what bounds it. See bench/RESULTS.md.
"""
