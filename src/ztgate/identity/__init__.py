"""Agent identity: SPIFFE IDs, the certificate authority, SVIDs and their verification."""
