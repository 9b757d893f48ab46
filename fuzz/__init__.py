"""Fuzzing kerasrepair: mutations of real archives (`mutations`), the properties every
command must keep on them (`harness`), coverage-guided targets (`targets`), and the
script that runs them for a given time (`run.py`)."""
