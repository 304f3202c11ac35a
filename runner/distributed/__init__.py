"""Child jobs on Celery workers, beyond one controller (imported only with a broker)."""
