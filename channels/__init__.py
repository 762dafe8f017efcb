"""How an alert reaches people: rules, channels, and the delivery log."""

__all__ = [
    "CHANNELS",
    "Channel",
    "ConfigError",
    "Delivery",
    "DeliveryStatus",
    "PermanentDeliveryError",
    "Rendered",
    "RoutingReport",
    "TransientDeliveryError",
    "build_channel",
    "route_alert",
]

from channels.base import Channel, Delivery, DeliveryStatus, Rendered
from channels.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from channels.registry import CHANNELS, build_channel
from channels.routing import RoutingReport, route_alert
