"""`python -m bench`: every scenario in one run (bench/run_all.py)."""

from bench.run_all import main

main()
