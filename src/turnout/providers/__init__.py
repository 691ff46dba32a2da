"""Upstream providers: who they are, how to reach and authenticate to them, and failover."""
