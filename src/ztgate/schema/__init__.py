"""The schema checks: arguments before the call, the result after it."""
