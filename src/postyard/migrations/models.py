"""Imports every domain's tables so Base.metadata is complete (migrations, drift test)."""

from __future__ import annotations


def load_all_models() -> None:
    import postyard.delivery.models  # noqa: PLC0415
    import postyard.domains.models  # noqa: PLC0415
    import postyard.events.models  # noqa: PLC0415
    import postyard.inbound.models  # noqa: PLC0415
    import postyard.sending.models  # noqa: PLC0415
    import postyard.suppression.models  # noqa: PLC0415
    import postyard.tenancy.models  # noqa: PLC0415
    import postyard.tracking.models  # noqa: F401, PLC0415
