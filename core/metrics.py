"""Prometheus metrics, one registry per hub so that several hubs (tests) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inbound_accepted = Counter(
            "threadline_inbound_accepted",
            "Inbound messages committed to the inbox",
            ["channel"],
            registry=self.registry,
        )
        self.inbound_duplicates = Counter(
            "threadline_inbound_duplicates",
            "Repeated deliveries recognised and ignored",
            ["channel"],
            registry=self.registry,
        )
        self.inbound_throttled = Counter(
            "threadline_inbound_throttled",
            "Inbound messages stored but not answered: their sender was over the inbound rate",
            ["channel"],
            registry=self.registry,
        )
        self.replies = Counter(
            "threadline_replies",
            "Replies committed to the outbox",
            ["channel", "mode"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "threadline_deliveries",
            "Outbound delivery attempts by outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.status_updates = Counter(
            "threadline_status_updates",
            "Platform delivery reports by status",
            ["channel", "status"],
            registry=self.registry,
        )
        self.webhooks_rejected = Counter(
            "threadline_webhooks_rejected",
            "Webhook requests refused, by reason",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.llm_failures = Counter(
            "threadline_llm_failures", "LLM calls that failed", registry=self.registry
        )
        self.memory_writes = Counter(
            "threadline_memory_writes", "Memory writes by outcome", ["outcome"], registry=self.registry
        )
        self.turn_seconds = Histogram(
            "threadline_turn_seconds",
            "Inbox commit to reply committed",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.pickup_seconds = Histogram(
            "threadline_pickup_seconds",
            "Inbox commit to a worker starting on the message (any process: NOTIFY wake-up latency included)",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.handoffs_opened = Counter(
            "threadline_handoffs_opened",
            "Conversations handed to a person, by who asked (customer, assistant, fallback)",
            ["requested_by"],
            registry=self.registry,
        )
        self.handoff_escalations = Counter(
            "threadline_handoff_escalations",
            "Handoffs nobody answered in time, escalated to the team",
            registry=self.registry,
        )
        self.handoff_wait_seconds = Histogram(
            "threadline_handoff_wait_seconds",
            "From a customer asking for a person to an operator taking the conversation",
            registry=self.registry,
            buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 86400),
        )
        self.handoffs_open = Gauge(
            "threadline_handoffs_open",
            "Open handoffs by status (waiting, owned); counted in the database at each scrape",
            ["status"],
            registry=self.registry,
        )
        self.cases_opened = Counter(
            "threadline_cases_opened",
            "Support cases opened, by who opened them "
            "(assistant: the LLM's tool, rules: offline, operator: a person)",
            ["opened_by"],
            registry=self.registry,
        )
        self.cases_resolved = Counter(
            "threadline_cases_resolved",
            "Support cases resolved, by who resolved them (assistant, rules, operator)",
            ["resolved_by"],
            registry=self.registry,
        )
        self.case_ratings = Counter(
            "threadline_case_ratings",
            "Customers' ratings (1 bad to 5 great) of resolved support cases",
            ["rating"],
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "threadline_dead_letters",
            "Replies that failed for good and wait for an admin (see /admin/dead-letters); counted in the "
            "database at each scrape, so every process reports the same total (aggregate with max, not sum)",
            registry=self.registry,
        )
        self.pending = Gauge(
            "threadline_pending", "Rows waiting, by queue", ["queue"], registry=self.registry
        )
        self.event_deliveries = Counter(
            "threadline_event_deliveries",
            "Event webhook attempts to the business's endpoints by outcome (sent, failed: retried later, "
            "dead: tries exhausted)",
            ["outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
