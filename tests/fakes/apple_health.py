"""Apple Health exports built in memory, shaped like the iPhone's "Export All Health Data".

The zip holds ``apple_health_export/export.xml``: an XML declaration, the ``HealthData`` DTD
(element and attribute declarations only), ``ExportDate``, ``Me``, then ``Record``,
``Correlation`` and ``Workout`` elements.  Type identifiers and sleep values are HealthKit's
(https://developer.apple.com/documentation/healthkit/hkquantitytypeidentifier,
https://developer.apple.com/documentation/healthkit/hkcategoryvaluesleepanalysis); dates are
written "yyyy-MM-dd HH:mm:ss Z" and units as HealthKit prints them (``count/min``, ``degF``,
``mmol<180.1558800000541>/L``).
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from xml.sax.saxutils import quoteattr

DTD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 13 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
]>
"""
HEAD = (
    DTD
    + """<HealthData locale="en_US">
 <ExportDate value="2026-11-22 09:00:00 +0100"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexNotSet"/>
"""
)
TAIL = "</HealthData>\n"
DEVICE = "&lt;&lt;HKDevice: 0x283f2c1e0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch&gt;"


def stamp(at: datetime) -> str:
    """The export's date format: "2026-11-20 07:00:00 +0100"."""
    return at.strftime("%Y-%m-%d %H:%M:%S %z")


def record(
    kind: str,
    value: object,
    unit: str | None,
    start: datetime | str,
    end: datetime | str | None = None,
    source: str = "Apple Watch",
) -> str:
    """One ``<Record>``; ``kind`` without its HealthKit prefix when it is a quantity."""
    if not kind.startswith("HK"):
        kind = "HKQuantityTypeIdentifier" + kind
    start_text = start if isinstance(start, str) else stamp(start)
    end_text = start_text if end is None else end if isinstance(end, str) else stamp(end)
    unit_attr = f" unit={quoteattr(unit)}" if unit is not None else ""
    return (
        f' <Record type="{kind}" sourceName={quoteattr(source)} sourceVersion="11.1" device="{DEVICE}"{unit_attr}'
        f' creationDate="{end_text}" startDate="{start_text}" endDate="{end_text}" value={quoteattr(str(value))}>\n'
        '  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>\n'
        " </Record>\n"
    )


def sleep(stage: str, start: datetime, end: datetime, source: str = "Apple Watch") -> str:
    """A sleep segment: ``stage`` is InBed, AsleepCore, AsleepDeep, AsleepREM, Awake or AsleepUnspecified."""
    return record("HKCategoryTypeIdentifierSleepAnalysis", f"HKCategoryValueSleepAnalysis{stage}", None, start, end,
                  source)  # fmt: skip


def workout(activity: str, start: datetime, end: datetime, inner: str = "", **attrs: str) -> str:
    extra = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return (
        f' <Workout workoutActivityType="HKWorkoutActivityType{activity}" duration="{(end - start).seconds / 60:g}"'
        f' durationUnit="min" sourceName="Apple Watch" sourceVersion="11.1"{extra} creationDate="{stamp(end)}"'
        f' startDate="{stamp(start)}" endDate="{stamp(end)}">\n{inner} </Workout>\n'
    )


def statistics(kind: str, unit: str, **values: str) -> str:
    extra = "".join(f" {k}={quoteattr(v)}" for k, v in values.items())
    return f'  <WorkoutStatistics type="HKQuantityTypeIdentifier{kind}"{extra} unit="{unit}"/>\n'


def export_xml(*elements: str, head: str = HEAD) -> bytes:
    return (head + "".join(elements) + TAIL).encode()


def export_zip(xml: bytes, member: str = "apple_health_export/export.xml") -> bytes:
    """The zip the Health app shares, holding ``xml`` (and the CDA file beside it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, xml)
        archive.writestr("apple_health_export/export_cda.xml", b"<ClinicalDocument/>")
    return out.getvalue()
