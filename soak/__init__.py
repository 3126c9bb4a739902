"""`make soak`: the project's own fault soak, real node processes on a private RabbitMQ."""
