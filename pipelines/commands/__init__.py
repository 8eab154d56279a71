"""The `vlmod` subcommands, one module per group; heavy imports stay inside the commands."""
