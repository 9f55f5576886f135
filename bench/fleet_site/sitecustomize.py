"""Started by bench/fleet.py through PYTHONPATH: count this process's round trips (fleet_counter)."""

import fleet_counter

fleet_counter.install_from_env()
