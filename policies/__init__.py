"""Policy files and the message contracts: pure code, no network, no model."""

from policies.native import activate

# The compiled engine, where a build of these sources exists (`policies.native`).
ENGINE = activate(__path__)
