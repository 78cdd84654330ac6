"""Tracking: open pixels, click redirects, machine-activity detection, unsubscribe links."""
