"""The flow from the inbox to the outbox.

Ingress, lanes, the worker and its interceptions, delivery, dead letters, retention.
"""
