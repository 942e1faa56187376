"""Independent checks for the samples of manifest/disguised.toml: Office outputs (OOXML packages,
or text an Office XML document was reduced to) go through checks_office.py, which greps every
delivered sheet for formulas reaching outside the workbook and lists every Word field
instruction (complex and simple) for live link targets."""

from __future__ import annotations

from pathlib import Path

import checks_office

EXTRA_KEYS = set(checks_office.EXTRA_KEYS)


def check(sample: dict, output_path: Path, report: dict) -> list[str]:
    if (report.get("output") or {}).get("kind") == "mail":
        return []  # verify.py's own mail checks ("pymail") cover it
    return checks_office.check(sample, output_path, report)
