"""Threadline's core: value types, settings, the durable pipeline, the agent and the wiring."""
