"""I/O: the Faust app, Kafka and Redis clients, the embedded infrastructure, the CLI."""
