"""Safety alarms (安全守护): ingest, alarm desk, registry, family side."""
