"""Human review: review tasks in Redis, the review console, decisions and the quality report."""
