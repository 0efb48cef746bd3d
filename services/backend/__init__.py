"""The HTTP API: validates requests, publishes jobs, waits for their outcome, maps errors."""
