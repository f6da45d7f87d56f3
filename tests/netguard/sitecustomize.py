"""Loaded by subprocesses whose PYTHONPATH starts with this folder: installs the loopback-only guard."""

import netguard

netguard.install()
