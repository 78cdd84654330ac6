"""Events: the append-only record of what happened to each email (webhooks read it)."""
