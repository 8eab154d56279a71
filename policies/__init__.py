"""Policy files and the message contracts: pure code, no network, no model."""
