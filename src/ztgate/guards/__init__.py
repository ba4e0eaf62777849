"""Guards: checks that treat what the agent says and reads as untrusted."""
