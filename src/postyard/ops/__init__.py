"""Operations: what an operator watches the instance by (metrics for Prometheus)."""
