"""Web pages of the chat front ends: account linking (``/chat/link``) and /score charts."""

from __future__ import annotations

__all__ = ["IdentityProof", "Proven", "SlackOidc", "setup"]

from bot.chat.link import setup
from bot.chat.proofs import IdentityProof, Proven, SlackOidc
