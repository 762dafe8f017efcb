"""How an alert reaches people: rules, channels, and the delivery log."""

__all__ = [
    "CHANNELS",
    "Channel",
    "ConfigError",
    "Delivery",
    "DeliveryStatus",
    "DeploymentKeys",
    "PermanentDeliveryError",
    "Rendered",
    "RoutingReport",
    "TransientDeliveryError",
    "Transport",
    "build_channel",
    "escalate_alert",
    "route_alert",
    "send_test_message",
]

from channels.base import Channel, Delivery, DeliveryStatus, Rendered
from channels.context import DeploymentKeys
from channels.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from channels.http import Transport
from channels.registry import CHANNELS, build_channel
from channels.routing import RoutingReport, escalate_alert, route_alert, send_test_message
