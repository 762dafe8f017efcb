"""FreeStyle Libre: CGM glucose read through Junction's LibreView integration.

Not the LibreLinkUp protocol of Nightscout uploaders: that is the private back end of Abbott's
follower app, logs in with the patient's password, and breaks whenever Abbott changes a header
(docs/providers.md gives the whole reason).  A person shares LibreView with a practice, or
signs in inside Junction Link; Junction's ``freestyle_libre`` and ``abbott_libreview`` sources
then carry the readings, which ``Junction`` reads (floating times included) and this keeps.
"""

from __future__ import annotations

from typing import ClassVar

from pipeline.providers.junction import LIBRE_ID, LIBRE_RESOURCES, LIBRE_SOURCES, Junction


class Libre(Junction):
    """Junction narrowed to LibreView glucose; same key, same client, same pushes."""

    id: ClassVar[str] = LIBRE_ID
    display_name: ClassVar[str] = "FreeStyle Libre"
    metrics: ClassVar[frozenset[str]] = frozenset({"glucose"})
    sources: ClassVar[frozenset[str] | None] = LIBRE_SOURCES
    resources: ClassVar[tuple[str, ...]] = LIBRE_RESOURCES

    @property
    def unavailable_reason(self) -> str | None:
        return None if self.configured else "FreeStyle Libre is read through Junction: it needs JUNCTION_API_KEY"
