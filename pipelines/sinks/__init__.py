"""Where outcomes are written durably: the verdict history in PostgreSQL (`postgres`)."""
