"""Signed webhooks for integrators: events fan out to endpoints, each delivery is retried by
Dramatiq and logged per attempt (Standard Webhooks signatures from ``channels.signing``)."""

__all__ = ["Attempted", "WebhookSettings", "deliver", "dispatch", "replay", "send_test"]

from pipeline.webhooks.deliver import Attempted, deliver
from pipeline.webhooks.dispatch import dispatch, replay, send_test
from pipeline.webhooks.settings import WebhookSettings
