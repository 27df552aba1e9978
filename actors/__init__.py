"""actorq: background jobs as a supervised actor system."""
