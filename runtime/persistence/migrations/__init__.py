"""SQL migrations, applied in order by ``runtime.persistence.migrate``."""
