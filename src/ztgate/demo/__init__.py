"""The demo: small tools to call, and a scripted scenario against a live gateway."""
