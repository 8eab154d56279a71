"""The runtime: Kafka in and out, Ray actors and Serve deployments, batching, routing, tracing."""
